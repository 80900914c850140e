package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// ports are chosen once per cluster directory and reused on restart, so
// kubeconfigs and clients written before a restart keep working.
type ports struct {
	Apiserver         int `json:"apiserver"`
	EtcdClient        int `json:"etcdClient"`
	EtcdPeer          int `json:"etcdPeer"`
	ControllerManager int `json:"controllerManager"`
	Scheduler         int `json:"scheduler"`
}

type child struct {
	name string
	cmd  *exec.Cmd
}

// extraArgs collects a repeatable flag: each use adds one argument, passed
// after the defaults so that it overrides them (the last value of a flag wins).
type extraArgs []string

func (e *extraArgs) String() string { return fmt.Sprint([]string(*e)) }

func (e *extraArgs) Set(v string) error {
	*e = append(*e, v)
	return nil
}

// componentArgs are extra arguments for each component, e.g. the higher
// request limits and client QPS the benchmark needs.
type componentArgs struct {
	apiserver, controllerManager, scheduler extraArgs
}

func run(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	dir := fs.String("dir", "target/cluster", "cluster directory: data, certificates, logs, kubeconfig")
	audit := fs.Bool("audit", false, "write an apiserver audit log (metadata level) to DIR/logs/audit.log")
	var extra componentArgs
	fs.Var(&extra.apiserver, "apiserver-arg", "extra kube-apiserver argument, e.g. --apiserver-arg=--max-requests-inflight=800 (repeatable)")
	fs.Var(&extra.controllerManager, "controller-manager-arg", "extra kube-controller-manager argument (repeatable)")
	fs.Var(&extra.scheduler, "scheduler-arg", "extra kube-scheduler argument (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vkcp:", err)
		return 2
	}
	if err := runCluster(abs, *audit, extra); err != nil {
		fmt.Fprintln(os.Stderr, "vkcp:", err)
		return 1
	}
	return 0
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s vkcp: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, a...))
}

func runCluster(dir string, audit bool, extra componentArgs) error {
	for _, d := range []string{"logs", "pids", "etcd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(dir, "ready"))
	if err := os.WriteFile(filepath.Join(dir, "vkcp.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	p, err := loadOrPickPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		return fmt.Errorf("choosing ports: %w", err)
	}
	pk, err := setupPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", p.Apiserver)
	for name, user := range map[string]string{"kubeconfig": "admin", "controller-manager.kubeconfig": "controller-manager", "scheduler.kubeconfig": "scheduler"} {
		if err := writeKubeconfig(filepath.Join(dir, name), server, pk, user); err != nil {
			return err
		}
	}

	etcd, err := startEtcd(filepath.Join(dir, "etcd"), p)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()
	logf("etcd ready on 127.0.0.1:%d", p.EtcdClient)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	exited := make(chan string, 3)
	var children []*child
	stopAll := func() {
		for _, c := range children {
			if c.cmd.Process != nil {
				_ = c.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		deadline := time.After(15 * time.Second)
		for remaining := len(children); remaining > 0; {
			select {
			case <-exited:
				remaining--
			case <-deadline:
				for _, c := range children {
					if c.cmd.ProcessState == nil && c.cmd.Process != nil {
						_ = c.cmd.Process.Kill()
					}
				}
				deadline = time.After(5 * time.Second)
			}
		}
		for _, c := range children {
			os.Remove(filepath.Join(dir, "pids", c.name+".pid"))
		}
	}
	start := func(name string, args ...string) error {
		logFile, err := os.OpenFile(filepath.Join(dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(self, append([]string{name}, args...)...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// The child dies with us even if we are SIGKILLed: no process is left behind.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		_ = os.WriteFile(filepath.Join(dir, "pids", name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		c := &child{name: name, cmd: cmd}
		children = append(children, c)
		go func() {
			_ = cmd.Wait()
			logFile.Close()
			exited <- name
		}()
		logf("started %s (pid %d), log %s", name, cmd.Process.Pid, logFile.Name())
		return nil
	}

	pkiDir := filepath.Join(dir, "pki")
	apiArgs := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", p.EtcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(p.Apiserver),
		"--tls-cert-file=" + filepath.Join(pkiDir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pkiDir, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(pkiDir, "ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pkiDir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pkiDir, "sa.key"),
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		// Bootstrap tokens (Secrets of type bootstrap.kubernetes.io/token in
		// kube-system) authenticate as system:bootstrap:<id> in group
		// system:bootstrappers: what a kubelet's --bootstrap-kubeconfig holds.
		"--enable-bootstrap-token-auth=true",
		"--allow-privileged=true",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--kubelet-client-certificate=" + filepath.Join(pkiDir, "apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + filepath.Join(pkiDir, "apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + filepath.Join(pkiDir, "ca.crt"),
		"--requestheader-client-ca-file=" + filepath.Join(pkiDir, "ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + filepath.Join(pkiDir, "front-proxy-client.crt"),
		"--proxy-client-key-file=" + filepath.Join(pkiDir, "front-proxy-client.key"),
		"--enable-aggregator-routing=true",
		"--profiling=false",
		"--v=1",
	}
	if audit {
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
			return err
		}
		apiArgs = append(apiArgs,
			"--audit-policy-file="+policy,
			"--audit-log-path="+filepath.Join(dir, "logs", "audit.log"),
			"--audit-log-format=json",
			"--audit-log-mode=batch",
			"--audit-log-maxsize=2000")
	}
	apiArgs = append(apiArgs, extra.apiserver...)
	if err := start("kube-apiserver", apiArgs...); err != nil {
		return err
	}
	// The controller-manager and the scheduler read the extension-apiserver-
	// authentication ConfigMap at start-up and exit if RBAC does not allow it
	// yet; the bootstrap roles exist once /readyz is ok. Start them only then.
	apiCtx, apiCancel := context.WithCancel(context.Background())
	apiReady := make(chan error, 1)
	go func() { apiReady <- waitReadyz(apiCtx, filepath.Join(dir, "kubeconfig")) }()
	select {
	case sig := <-sigs:
		logf("received %s: stopping the control plane", sig)
		apiCancel()
		stopAll()
		return nil
	case name := <-exited:
		apiCancel()
		children = children[:0]
		return fmt.Errorf("%s exited before it was ready; see %s", name, filepath.Join(dir, "logs", name+".log"))
	case err := <-apiReady:
		apiCancel()
		if err != nil {
			stopAll()
			return fmt.Errorf("kube-apiserver: %w", err)
		}
		logf("kube-apiserver ready on 127.0.0.1:%d", p.Apiserver)
	}
	if err := ensureBootstrapPolicy(filepath.Join(dir, "kubeconfig"), server, pk); err != nil {
		stopAll()
		return fmt.Errorf("bootstrap token RBAC: %w", err)
	}
	cmKubeconfig := filepath.Join(dir, "controller-manager.kubeconfig")
	cmArgs := []string{
		"--kubeconfig=" + cmKubeconfig,
		"--authentication-kubeconfig=" + cmKubeconfig,
		"--authorization-kubeconfig=" + cmKubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(p.ControllerManager),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + filepath.Join(pkiDir, "sa.key"),
		"--root-ca-file=" + filepath.Join(pkiDir, "ca.crt"),
		"--cluster-signing-cert-file=" + filepath.Join(pkiDir, "ca.crt"),
		"--cluster-signing-key-file=" + filepath.Join(pkiDir, "ca.key"),
		// "*" leaves out the two bootstrap-token controllers; a kubeadm
		// cluster runs them: tokencleaner deletes expired bootstrap tokens,
		// bootstrapsigner signs kube-public/cluster-info with them.
		// csrapproving (in "*") approves kubelet client CSRs by RBAC.
		"--controllers=*,bootstrapsigner,tokencleaner",
		"--v=1",
	}
	if err := start("kube-controller-manager", append(cmArgs, extra.controllerManager...)...); err != nil {
		stopAll()
		return err
	}
	schedKubeconfig := filepath.Join(dir, "scheduler.kubeconfig")
	schedArgs := []string{
		"--kubeconfig=" + schedKubeconfig,
		"--authentication-kubeconfig=" + schedKubeconfig,
		"--authorization-kubeconfig=" + schedKubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(p.Scheduler),
		"--v=1",
	}
	if err := start("kube-scheduler", append(schedArgs, extra.scheduler...)...); err != nil {
		stopAll()
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyErr := make(chan error, 1)
	go func() { readyErr <- waitReady(ctx, filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "ready")) }()

	for {
		select {
		case sig := <-sigs:
			logf("received %s: stopping the control plane", sig)
			cancel()
			stopAll()
			return nil
		case name := <-exited:
			logf("%s exited unexpectedly; see %s", name, filepath.Join(dir, "logs", name+".log"))
			cancel()
			// Account for the child that already exited before stopping the rest.
			for i, c := range children {
				if c.name == name {
					children = append(children[:i], children[i+1:]...)
					break
				}
			}
			stopAll()
			return fmt.Errorf("%s exited unexpectedly", name)
		case err := <-readyErr:
			if err != nil && !errors.Is(err, context.Canceled) {
				logf("cluster did not become ready: %v", err)
			} else if err == nil {
				logf("cluster ready; kubeconfig %s", filepath.Join(dir, "kubeconfig"))
			}
		}
	}
}

// waitReadyz polls the apiserver's /readyz until it answers ok.
func waitReadyz(ctx context.Context, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
	}
	return fmt.Errorf("/readyz not ok after 5 minutes")
}

// waitReady polls /readyz and the default ServiceAccount, then writes the ready marker.
func waitReady(ctx context.Context, kubeconfig, marker string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil || string(body) != "ok" {
			continue
		}
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			continue
		}
		return os.WriteFile(marker, []byte(time.Now().Format(time.RFC3339Nano)), 0o644)
	}
	return fmt.Errorf("not ready after 5 minutes")
}

func loadOrPickPorts(path string) (ports, error) {
	var p ports
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &p); err == nil && p.Apiserver != 0 {
			return p, nil
		}
	}
	picked := make([]int, 5)
	var listeners []net.Listener
	for i := range picked {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return p, err
		}
		listeners = append(listeners, l)
		picked[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range listeners {
		l.Close()
	}
	p = ports{Apiserver: picked[0], EtcdClient: picked[1], EtcdPeer: picked[2], ControllerManager: picked[3], Scheduler: picked[4]}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return p, err
	}
	return p, os.WriteFile(path, b, 0o644)
}

func startEtcd(dataDir string, p ports) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "vkcp"
	cfg.Dir = dataDir
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", p.EtcdClient)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", p.EtcdPeer)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(filepath.Dir(dataDir), "logs", "etcd.log")}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd did not become ready in 60s")
	}
}

func setupPKI(dir string) (*pki, error) {
	pk, err := loadOrCreatePKI(dir)
	if err != nil {
		return nil, err
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}
	steps := []error{
		pk.leaf("apiserver", "kube-apiserver", nil, true,
			[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, loopback),
		pk.leaf("admin", "kubernetes-admin", []string{"system:masters"}, false, nil, nil),
		pk.leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, false, nil, nil),
		pk.leaf("controller-manager", "system:kube-controller-manager", nil, false, nil, nil),
		pk.leaf("scheduler", "system:kube-scheduler", nil, false, nil, nil),
		pk.leaf("front-proxy-client", "front-proxy-client", nil, false, nil, nil),
		pk.serviceAccountKey(),
	}
	for _, err := range steps {
		if err != nil {
			return nil, err
		}
	}
	return pk, nil
}

func writeKubeconfig(path, server string, pk *pki, user string) error {
	ca, err := os.ReadFile(pk.path("ca.crt"))
	if err != nil {
		return err
	}
	cert, err := os.ReadFile(pk.path(user + ".crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(pk.path(user + ".key"))
	if err != nil {
		return err
	}
	cfg := map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []any{map[string]any{"name": "vk-local", "cluster": map[string]any{
			"server": server, "certificate-authority-data": ca}}},
		"users": []any{map[string]any{"name": user, "user": map[string]any{
			"client-certificate-data": cert, "client-key-data": key}}},
		"contexts":        []any{map[string]any{"name": "vk-local", "context": map[string]any{"cluster": "vk-local", "user": user}}},
		"current-context": "vk-local",
	}
	// encoding/json writes []byte as base64, which is what the *-data fields hold.
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`
