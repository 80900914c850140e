// Command vkcp is the project's local Kubernetes control plane for tests, the
// demo and benchmarks: embedded etcd plus kube-apiserver, kube-controller-manager
// and kube-scheduler, each run as a child process of this binary through the
// component's own cobra command. It also acts as a kubectl of the same version.
//
// Usage:
//
//	vkcp run --dir DIR [--audit] [--apiserver-arg=ARG]... [--controller-manager-arg=ARG]... [--scheduler-arg=ARG]...
//	                              run a cluster in the foreground (supervises children)
//	vkcp kubectl ARGS...          kubectl of the pinned version
//	vkcp kube-apiserver ARGS...   (internal) the component itself
//	vkcp version                  print the pinned Kubernetes version
package main

import (
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vkcp run --dir DIR | kubectl ARGS... | version")
		os.Exit(2)
	}
	sub := os.Args[1]
	// Each component parses os.Args[1:] itself; drop our dispatch word.
	os.Args = append([]string{os.Args[0] + " " + sub}, os.Args[2:]...)
	switch sub {
	case "run":
		os.Exit(run(os.Args[1:]))
	case "version":
		fmt.Println(version.Get().GitVersion)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kubectl":
		cmd := kubectlcmd.NewDefaultKubectlCommand()
		if err := cli.RunNoErrOutput(cmd); err != nil {
			kubectlutil.CheckErr(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "vkcp: unknown command %q\n", sub)
		os.Exit(2)
	}
}
