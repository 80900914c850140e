package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// bootstrapBindings is the RBAC a kubeadm cluster creates for kubelet TLS
// bootstrap (kubeadm names them kubeadm:kubelet-bootstrap,
// kubeadm:node-autoapprove-bootstrap and
// kubeadm:node-autoapprove-certificate-rotation). The ClusterRoles are the
// apiserver's own bootstrap policy; the controller-manager's csrapproving
// controller approves a kubernetes.io/kube-apiserver-client-kubelet CSR when
// its requester holds the matching nodeclient/selfnodeclient permission.
var bootstrapBindings = []struct{ name, role, group string }{
	// A bootstrap token may create CSRs and read them back.
	{"vkcp:kubelet-bootstrap", "system:node-bootstrapper", "system:bootstrappers"},
	// ... and its system:node:<name> client CSR is approved.
	{"vkcp:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", "system:bootstrappers"},
	// A node renews its own client certificate with its current one.
	{"vkcp:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"},
}

// ensureBootstrapPolicy creates (or leaves as they are) the bootstrap RBAC
// and kube-public/cluster-info, the kubeconfig without credentials that the
// bootstrapsigner controller signs with every bootstrap token.
func ensureBootstrapPolicy(adminKubeconfig, server string, pk *pki) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", adminKubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range bootstrapBindings {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: b.name, Labels: map[string]string{"app.kubernetes.io/managed-by": "vkcp"}},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: b.role},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: b.group}},
		}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating ClusterRoleBinding %s: %w", b.name, err)
		}
	}
	ca, err := os.ReadFile(pk.path("ca.crt"))
	if err != nil {
		return err
	}
	kubeconfig, err := json.MarshalIndent(map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []any{map[string]any{"name": "", "cluster": map[string]any{
			"server": server, "certificate-authority-data": ca}}},
		"contexts": []any{},
		"users":    []any{},
	}, "", "  ")
	if err != nil {
		return err
	}
	info := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public"},
		Data:       map[string]string{"kubeconfig": string(kubeconfig)},
	}
	if _, err := cs.CoreV1().ConfigMaps("kube-public").Create(ctx, info, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating kube-public/cluster-info: %w", err)
	}
	logf("bootstrap token RBAC and kube-public/cluster-info in place")
	return nil
}
