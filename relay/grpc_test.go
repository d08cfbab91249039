package relay_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// syncStream opens a raw Sync stream to a relay.
func syncStream(t *testing.T, addr string, opts ...grpc.DialOption) (arborv1.RelayService_SyncClient, func()) {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// Long enough for a test's load to go through a busy machine while
	// the stream is open (TestSlowChildIsCut drains it only after).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	s, err := arborv1.NewRelayServiceClient(conn).Sync(ctx)
	if err != nil {
		cancel()
		conn.Close()
		t.Fatal(err)
	}
	return s, func() { cancel(); conn.Close() }
}

func subscribeFrame(id, replid string, off int64) *arborv1.SyncRequest {
	return &arborv1.SyncRequest{Frame: &arborv1.SyncRequest_Subscribe{Subscribe: &arborv1.Subscribe{RelayId: id, Site: "X", Replid: replid, Offset: off}}}
}

// TestSyncRefusesBadInput: each bad subscription is refused with a clear
// gRPC status, and the relay's real child and replicas are not disturbed.
func TestSyncRefusesBadInput(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.FutureOffsetWait = 300 * time.Millisecond })
	b := treeRelay(t, "relay-b", "B", a.arborURL())
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)
	st := a.status(t)

	cases := []struct {
		name  string
		frame *arborv1.SyncRequest
		code  codes.Code
		msg   string
	}{
		{"garbage first frame", &arborv1.SyncRequest{}, codes.InvalidArgument, "first frame"},
		{"ack before subscribe", &arborv1.SyncRequest{Frame: &arborv1.SyncRequest_Ack{Ack: &arborv1.Ack{Offset: 5}}}, codes.InvalidArgument, "first frame"},
		{"no relay id", subscribeFrame("", "?", 0), codes.InvalidArgument, "relay_id"},
		{"malformed replid", subscribeFrame("x", "not-an-id", 10), codes.InvalidArgument, "replid"},
		{"negative offset", subscribeFrame("x", st.GetReplid(), -4), codes.InvalidArgument, "negative"},
		{"unknown replid", subscribeFrame("x", strings.Repeat("ab", 20), 10), codes.FailedPrecondition, "unknown history"},
		{"future offset", subscribeFrame("x", st.GetReplid(), st.GetStoredOffset()+1<<20), codes.OutOfRange, "ahead of"},
		{"itself", subscribeFrame("relay-a", "?", 0), codes.FailedPrecondition, "CYCLE"},
		{"descendant", &arborv1.SyncRequest{Frame: &arborv1.SyncRequest_Subscribe{Subscribe: &arborv1.Subscribe{
			RelayId: "relay-z", Replid: "?", DownstreamRelayIds: []string{"relay-z", "relay-a"}}}}, codes.FailedPrecondition, "CYCLE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, done := syncStream(t, a.cfg.GRPCAddr)
			defer done()
			if err := s.Send(tc.frame); err != nil {
				t.Fatal(err)
			}
			_, err := s.Recv()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.code, tc.msg)
			}
		})
	}
	// A relay asked to follow its own child refuses with a clear error.
	a.setUpstream(t, b.arborURL())
	redistest.WaitFor(t, 10*time.Second, func() error {
		if e := a.status(t).GetLastError(); !strings.Contains(e, "CYCLE") {
			return &waitErr{"relay-a last error " + e + ", want a CYCLE refusal"}
		}
		return nil
	})
	a.setUpstream(t, upstreamOf(master))
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "relay-b full syncs", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
}

type waitErr struct{ s string }

func (e *waitErr) Error() string { return e.s }

// repoRoot finds the module root from this test file.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

var grpcurlOnce struct {
	sync.Once
	path string
	err  error
}

// grpcurl builds the real grpcurl from the tools module once.
func grpcurl(t *testing.T) string {
	t.Helper()
	grpcurlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "arbor-grpcurl-")
		if err != nil {
			grpcurlOnce.err = err
			return
		}
		grpcurlOnce.path = filepath.Join(dir, "grpcurl")
		cmd := exec.Command("go", "build", "-modfile=tools/go.mod", "-o", grpcurlOnce.path, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			grpcurlOnce.err = &waitErr{"build grpcurl: " + err.Error() + "\n" + string(out)}
		}
	})
	if grpcurlOnce.err != nil {
		t.Fatal(grpcurlOnce.err)
	}
	return grpcurlOnce.path
}

// TestGrpcurlInspects: the real grpcurl lists the services (reflection),
// describes the relay service, checks health and reads Status.
func TestGrpcurlInspects(t *testing.T) {
	bin := grpcurl(t)
	master := redistest.Start(t)
	a := treeRelay(t, "relay-a", "A", upstreamOf(master))
	b := treeRelay(t, "relay-b", "B", a.arborURL())
	redistest.WaitFor(t, 20*time.Second, func() error {
		if b.status(t).GetLinkState() != arborv1.LinkState_LINK_STATE_STREAMING {
			return &waitErr{"relay-b not streaming yet"}
		}
		return nil
	})
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := run("-plaintext", a.cfg.GRPCAddr, "list")
	for _, want := range []string{"arbor.v1.RelayService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(list, want) {
			t.Errorf("grpcurl list lacks %s:\n%s", want, list)
		}
	}
	if d := run("-plaintext", a.cfg.GRPCAddr, "describe", "arbor.v1.RelayService"); !strings.Contains(d, "rpc Sync ( stream .arbor.v1.SyncRequest ) returns ( stream .arbor.v1.SyncResponse )") {
		t.Errorf("describe:\n%s", d)
	}
	if h := run("-plaintext", a.cfg.GRPCAddr, "grpc.health.v1.Health/Check"); !strings.Contains(h, "SERVING") {
		t.Errorf("health: %s", h)
	}
	out := run("-plaintext", "-d", "{}", a.cfg.GRPCAddr, "arbor.v1.RelayService/Status")
	var resp struct {
		Relay struct {
			ID       string `json:"id"`
			Children []struct {
				ID   string `json:"id"`
				Kind string `json:"kind"`
			} `json:"children"`
		} `json:"relay"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("Status output: %v\n%s", err, out)
	}
	if resp.Relay.ID != "relay-a" || len(resp.Relay.Children) != 1 || resp.Relay.Children[0].ID != "relay-b" {
		t.Errorf("Status: %+v", resp.Relay)
	}
}

// testPKI writes a CA and certificates signed by it.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "arbor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return p
}

// issue returns cert and key files for name (valid for 127.0.0.1). The
// certificate names the relay ID name as relays expect it: a URI SAN
// arbor://relay/<name> (its Common Name is only a label).
func (p *testPKI) issue(t *testing.T, name string) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "arbor test " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		URIs:        []*url.URL{{Scheme: "arbor", Host: "relay", Path: "/" + name}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cert, keyf := filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, keyf
}

// mutualTLSTree starts a master with data, relay-a (site A) following it
// and relay-b (site B) following relay-a, both with mutual TLS and
// certificates from a new CA, and a replica of relay-b; it returns once
// the replica is in sync.
func mutualTLSTree(t *testing.T) (pki *testPKI, master *redistest.Server, a, b *testRelay, rep *redistest.Server) {
	t.Helper()
	pki = newPKI(t)
	withCert := func(name string) func(*relay.Config) {
		cert, key := pki.issue(t, name)
		return func(c *relay.Config) {
			c.TLS = relay.TLSConfig{CertFile: cert, KeyFile: key, CAFile: pki.caFile}
		}
	}
	master = redistest.Start(t)
	load(t, master, redistest.LoadOptions{SmallKeys: 300, Seed: 1})
	a = treeRelay(t, "relay-a", "A", upstreamOf(master), withCert("relay-a"))
	b = treeRelay(t, "relay-b", "B", a.arborURL(), withCert("relay-b"))
	rep = redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)
	return pki, master, a, b, rep
}

// TestMutualTLS: relays with certificates from the cluster's CA sync; a
// client without a certificate, or with one from another CA, is refused.
func TestMutualTLS(t *testing.T) {
	pki, _, a, _, _ := mutualTLSTree(t)

	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	try := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient(a.cfg.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = arborv1.NewRelayServiceClient(conn).Status(ctx, &arborv1.StatusRequest{})
		return err
	}
	if err := try(&tls.Config{RootCAs: pool}); status.Code(err) != codes.Unavailable {
		t.Errorf("client without a certificate: got %v, want Unavailable (handshake refused)", err)
	}
	other := newPKI(t)
	ocert, okey := other.issue(t, "intruder")
	kp, _ := tls.LoadX509KeyPair(ocert, okey)
	if err := try(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}}); status.Code(err) != codes.Unavailable {
		t.Errorf("client with another CA's certificate: got %v, want Unavailable", err)
	}
	good, gkey := pki.issue(t, "operator")
	gkp, _ := tls.LoadX509KeyPair(good, gkey)
	if err := try(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{gkp}}); err != nil {
		t.Errorf("client with a valid certificate: %v", err)
	}
	// Plaintext against a TLS relay fails too.
	conn, _ := grpc.NewClient(a.cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := arborv1.NewRelayServiceClient(conn).Status(ctx, &arborv1.StatusRequest{})
	cancel()
	conn.Close()
	if err == nil {
		t.Error("plaintext client reached a TLS relay")
	}
}

// TestSlowChildIsCut: a child that subscribes and stops reading is cut with
// a typed reason once a send blocks past the timeout, while a real child
// relay beside it keeps up with the load.
func TestSlowChildIsCut(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "256mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.SlowConsumerTimeout = 2 * time.Second })
	b := treeRelay(t, "relay-b", "B", a.arborURL())
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	stuck, done := syncStream(t, a.cfg.GRPCAddr)
	defer done()
	sub := subscribeFrame("stuck", "?", 0)
	sub.GetSubscribe().AcceptedCompressions = []arborv1.Compression{arborv1.Compression_COMPRESSION_NONE}
	if err := stuck.Send(sub); err != nil {
		t.Fatal(err)
	}
	// Write far more than gRPC's flow-control windows and the socket
	// buffers hold, so the stuck child's sends block; the real child must
	// keep up meanwhile.
	for seed := int64(2); seed < 5; seed++ {
		load(t, master, redistest.LoadOptions{SmallKeys: 10000, Seed: seed, Big: true})
	}
	redistest.WaitInSync(t, syncTimeout, master, rep)
	redistest.WaitFor(t, 20*time.Second, func() error {
		for _, c := range a.status(t).GetChildren() {
			if c.GetId() == "stuck" {
				return &waitErr{"stuck child still attached"}
			}
		}
		return nil
	})
	// Drain what was sent; the stream ends with the typed reason.
	var err error
	for err == nil {
		_, err = stuck.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "SLOW_CONSUMER") {
		t.Errorf("stuck child's stream ended with %v, want ResourceExhausted SLOW_CONSUMER", err)
	}
	if !strings.Contains(a.logBuf.String(), "accepted nothing for 2s") {
		t.Error("relay-a log lacks the slow consumer cut")
	}
}
