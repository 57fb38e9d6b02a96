// Command kubelet-portforward serves the part of a kubelet's API that a
// port-forward through the API server reaches: /portForward/{namespace}/{pod}
// (and .../{uid}), SPDY or websocket, on the kubelet's port, with the
// kubelet's own streaming library. The simulator (kcp/sim) runs one beside
// each machine's etcd member and kube-apiserver; each pod port it may forward
// is named on the command line and mapped to a local address, since a
// simulated machine's "containers" are plain processes on its address. Any
// other pod or port is refused on the stream's error channel, with a message
// naming what is forwarded (kubectl prints it; a real kubelet says "connection
// refused" there for a port nothing listens on). The API server routes a
// pod's port-forward only to the kubelet of its Node, so pods are not checked
// against a list: a pod without forwards is one whose process is not run.
//
// TLS as a kubelet with x509 authentication: a serving certificate the
// cluster CA signed, and client certificates from that CA required (the API
// server presents its kubelet client certificate). Authorization: any such
// certificate, or only the common names given with --allowed-user.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
)

// The kubelet's defaults (KubeletConfiguration streamingConnectionIdleTimeout,
// the streaming server's stream creation timeout).
const (
	defaultIdleTimeout    = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
	dialTimeout           = 5 * time.Second
)

// target is one forwardable pod port: namespace/pod:port -> host:port.
type target struct {
	namespace, pod string
	port           int32
}

type forwards map[target]string

func (f forwards) String() string {
	entries := make([]string, 0, len(f))
	for t, address := range f {
		entries = append(entries, fmt.Sprintf("%s/%s:%d=%s", t.namespace, t.pod, t.port, address))
	}
	sort.Strings(entries)
	return strings.Join(entries, ",")
}

// Set parses `[namespace/]pod:port=host:port` (namespace defaults to kube-system).
func (f forwards) Set(value string) error {
	key, address, ok := strings.Cut(value, "=")
	if !ok {
		return fmt.Errorf("%q: want [namespace/]pod:port=host:port", value)
	}
	if _, _, err := net.SplitHostPort(address); err != nil {
		return fmt.Errorf("%q: bad target address: %v", value, err)
	}
	podKey, portText, ok := strings.Cut(key, ":")
	if !ok {
		return fmt.Errorf("%q: want [namespace/]pod:port=host:port", value)
	}
	port, err := strconv.ParseInt(portText, 10, 32)
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("%q: bad port %q", value, portText)
	}
	namespace, pod, ok := strings.Cut(podKey, "/")
	if !ok {
		namespace, pod = "kube-system", podKey
	}
	if namespace == "" || pod == "" {
		return fmt.Errorf("%q: empty namespace or pod name", value)
	}
	f[target{namespace, pod, int32(port)}] = address
	return nil
}

// podPorts lists what is forwarded, without where to: for messages to clients.
func (f forwards) podPorts() string {
	entries := make([]string, 0, len(f))
	for t := range f {
		entries = append(entries, fmt.Sprintf("%s/%s:%d", t.namespace, t.pod, t.port))
	}
	sort.Strings(entries)
	return strings.Join(entries, ", ")
}

func (f forwards) ports(namespace, pod string) []string {
	var found []string
	for t := range f {
		if t.namespace == namespace && t.pod == pod {
			found = append(found, strconv.Itoa(int(t.port)))
		}
	}
	sort.Strings(found)
	return found
}

type users []string

func (u *users) String() string     { return strings.Join(*u, ",") }
func (u *users) Set(v string) error { *u = append(*u, v); return nil }

// podForwarder is the PortForwarder of one request: it knows the namespace,
// which the library does not pass on.
type podForwarder struct {
	namespace string
	forwards  forwards
}

func (p podForwarder) PortForward(ctx context.Context, name string, uid types.UID, port int32, stream io.ReadWriteCloser) error {
	address, ok := p.forwards[target{p.namespace, name, port}]
	if !ok {
		if ports := p.forwards.ports(p.namespace, name); len(ports) > 0 {
			return fmt.Errorf("the simulated kubelet forwards no port %d of pod %s/%s (it forwards: %s)",
				port, p.namespace, name, strings.Join(ports, ", "))
		}
		return fmt.Errorf("the simulated kubelet runs nothing for pod %s/%s to forward to (it forwards: %s)",
			p.namespace, name, p.forwards.podPorts())
	}
	conn, err := net.DialTimeout("tcp", address, dialTimeout)
	if err != nil {
		return fmt.Errorf("failed to connect to %s for port %d of pod %s/%s: %v", address, port, p.namespace, name, err)
	}
	defer conn.Close()
	klog.V(2).InfoS("Forwarding", "pod", klog.KRef(p.namespace, name), "port", port, "to", address)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

func main() {
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(fs)
	address := fs.String("address", "", "the node's address to serve on (required)")
	port := fs.Int("port", 10250, "the kubelet's port")
	certFile := fs.String("tls-cert-file", "", "serving certificate (PEM, required)")
	keyFile := fs.String("tls-private-key-file", "", "its private key (PEM, required)")
	clientCA := fs.String("client-ca-file", "", "CA whose client certificates are accepted (required)")
	idle := fs.Duration("streaming-connection-idle-timeout", defaultIdleTimeout, "idle time after which a port-forward connection is closed")
	fwd := forwards{}
	fs.Var(fwd, "forward", "[namespace/]pod:port=host:port, repeatable: a pod port and where it is served")
	var allowed users
	fs.Var(&allowed, "allowed-user", "client certificate common name allowed (repeatable; none: any certificate from the CA)")
	_ = fs.Parse(os.Args[1:])
	if *address == "" || *certFile == "" || *keyFile == "" || *clientCA == "" {
		fmt.Fprintln(os.Stderr, "--address, --tls-cert-file, --tls-private-key-file and --client-ca-file are required")
		os.Exit(2)
	}

	pem, err := os.ReadFile(*clientCA)
	if err != nil {
		klog.Fatalf("reading --client-ca-file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		klog.Fatalf("--client-ca-file %s holds no PEM certificate", *clientCA)
	}
	certificate, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		klog.Fatalf("loading the serving certificate: %v", err)
	}

	mux := http.NewServeMux()
	handler := func(w http.ResponseWriter, r *http.Request) {
		if len(allowed) > 0 {
			user := r.TLS.PeerCertificates[0].Subject.CommonName
			if !slices.Contains(allowed, user) {
				http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=create, resource=nodes, subresource=proxy)", user), http.StatusForbidden)
				return
			}
		}
		namespace, pod, uid := r.PathValue("namespace"), r.PathValue("pod"), types.UID(r.PathValue("uid"))
		options, err := portforward.NewV4Options(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		klog.InfoS("Port-forward", "pod", klog.KRef(namespace, pod), "user", r.TLS.PeerCertificates[0].Subject.CommonName, "websocket", strings.EqualFold(r.Header.Get("Upgrade"), "websocket"))
		portforward.ServePortForward(w, r, podForwarder{namespace, fwd}, pod, uid, options, *idle, streamCreationTimeout, portforward.SupportedProtocols)
	}
	for _, pattern := range []string{"/portForward/{namespace}/{pod}", "/portForward/{namespace}/{pod}/{uid}"} {
		mux.HandleFunc("GET "+pattern, handler)
		mux.HandleFunc("POST "+pattern, handler)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	listener, err := net.Listen("tcp", net.JoinHostPort(*address, strconv.Itoa(*port)))
	if err != nil {
		klog.Fatalf("listening: %v", err)
	}
	server := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{certificate},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"}, // upgrades (SPDY, websocket) need HTTP/1.1
		},
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: 30 * time.Second,
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
		_ = server.Close() // hijacked streams are not the server's to wait for
	}()
	klog.InfoS("Serving the kubelet's port-forward endpoint", "address", listener.Addr().String(), "forwards", fwd.String())
	if err := server.ServeTLS(listener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		klog.Fatalf("serving: %v", err)
	}
}
