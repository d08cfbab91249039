package main

// The deploy/ folder checked as CI can check it (issue 11): every topology
// through the real `arbor topology validate`, every YAML parsed, every
// example config through the real --config loader, every command line of
// the compose file and the manifests through the real flag parsing, the
// unit files with systemd-analyze verify, the test CA's certificates in a
// real mutual-TLS relay tree, the compose file against the compose schema
// (compose-go, offline), the manifests strictly decoded into the Kubernetes
// API types (offline). No Docker engine and no Kubernetes API server run
// here, and no JSON schema can be downloaded (deploy/README.md says what is
// and is not checked).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// deployDir is the repository's deploy/ folder.
var deployDir = filepath.Join("..", "..", "deploy")

// deployFiles lists the files under deploy/ whose names end in one of exts.
func deployFiles(t *testing.T, exts ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, e := range exts {
			if !d.IsDir() && strings.HasSuffix(p, e) {
				out = append(out, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no %v files under %s", exts, deployDir)
	}
	return out
}

// yamlDocs parses every document of a YAML file (merge keys resolved).
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if m != nil {
			docs = append(docs, m)
		}
	}
}

// str digs a string out of nested maps.
func str(m map[string]any, keys ...string) string {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = mm[k]
	}
	s, _ := v.(string)
	return s
}

// k8sObjects returns every object of the manifests under deploy/k8s, the
// kustomization left out.
func k8sObjects(t *testing.T) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, p := range deployFiles(t, ".yaml") {
		if filepath.Base(filepath.Dir(p)) != "k8s" || filepath.Base(p) == "kustomization.yaml" {
			continue
		}
		objs = append(objs, yamlDocs(t, p)...)
	}
	return objs
}

// k8sTopologyFile writes the topology of the ConfigMap arbor-topology to a
// file and returns its path.
func k8sTopologyFile(t *testing.T) string {
	t.Helper()
	for _, o := range k8sObjects(t) {
		if o["kind"] == "ConfigMap" && str(o, "metadata", "name") == "arbor-topology" {
			p := filepath.Join(t.TempDir(), "k8s-topology.yaml")
			if err := os.WriteFile(p, []byte(str(o, "data", "topology.yaml")), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatal("deploy/k8s: no ConfigMap arbor-topology")
	return ""
}

// topologyFiles are the topology files under deploy/ (a YAML file with
// relays and nodes) and the one in the Kubernetes ConfigMap.
func topologyFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, p := range deployFiles(t, ".yaml", ".yml") {
		docs := yamlDocs(t, p)
		if len(docs) == 1 && docs[0]["relays"] != nil && docs[0]["nodes"] != nil {
			out = append(out, p)
		}
	}
	return append(out, k8sTopologyFile(t))
}

func readTopology(t *testing.T, path string) *topology.Topology {
	t.Helper()
	top, err := readTopologyFile(path, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return top
}

func TestDeployTopologiesValid(t *testing.T) {
	files := topologyFiles(t)
	if len(files) < 4 {
		t.Fatalf("topology files %v: want the seed one, systemd's, compose's and the ConfigMap's", files)
	}
	for _, p := range files {
		out, err := arbor(context.Background(), "topology", "validate", "-f", p)
		if err != nil {
			t.Errorf("arbor topology validate -f %s: %v\n%s", p, err, out)
			continue
		}
		if !strings.Contains(out, "3 sites, 4 relays, 9 nodes") {
			t.Errorf("%s is not the seed topology's shape: %s", p, out)
		}
	}
}

func TestDeployYAMLParses(t *testing.T) {
	for _, p := range deployFiles(t, ".yaml", ".yml") {
		docs := yamlDocs(t, p)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", p)
		}
	}
	objs := k8sObjects(t)
	if len(objs) == 0 {
		t.Fatal("no Kubernetes objects under deploy/k8s")
	}
	for _, o := range objs {
		if str(o, "apiVersion") == "" || str(o, "kind") == "" || str(o, "metadata", "name") == "" {
			t.Errorf("Kubernetes object without apiVersion, kind or metadata.name: %v", o["metadata"])
		}
		if o["kind"] != "Namespace" && str(o, "metadata", "namespace") != "arbor" {
			t.Errorf("%s %s: namespace %q, want arbor", o["kind"], str(o, "metadata", "name"), str(o, "metadata", "namespace"))
		}
	}
}

// loadRelayConfig loads a relay config file through `arbor relay`'s flags
// and --config loader into the relay.Config the command would run with.
func loadRelayConfig(t *testing.T, path string, args ...string) (relay.Config, error) {
	t.Helper()
	cmd := newRelayCmd()
	if err := cmd.ParseFlags(append([]string{"--config", path}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(cmd.Flags()); err != nil {
		return relay.Config{}, err
	}
	cfg, _, err := relayConfig(cmd.Flags())
	return cfg, err
}

// loadNodeConfig is loadRelayConfig for `arbor node`.
func loadNodeConfig(t *testing.T, path string, args ...string) (*etcdFlags, error) {
	t.Helper()
	cmd, load := nodeCommand()
	if err := cmd.ParseFlags(append([]string{"--config", path}, args...)); err != nil {
		t.Fatal(err)
	}
	_, ef, err := load()
	return ef, err
}

// TestDeployConfigs loads every example config of deploy/config through the
// real --config path of its command and checks the result as the command
// would, against the topology the systemd path applies.
func TestDeployConfigs(t *testing.T) {
	top := readTopology(t, filepath.Join(deployDir, "systemd", "topology.yaml"))
	t.Setenv(nodeRedisEnv, "redis://:secret@127.0.0.1:7001")
	roles := map[string]int{}
	for _, p := range deployFiles(t, ".yaml") {
		if filepath.Base(filepath.Dir(p)) != "config" {
			continue
		}
		name := filepath.Base(p)
		switch {
		case strings.HasPrefix(name, "relay-"):
			roles["relay"]++
			cfg, err := loadRelayConfig(t, p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			spec, ok := top.Relays[cfg.ID]
			if !ok || spec.Site != cfg.Site {
				t.Errorf("%s: relay %s of site %s is not in deploy/systemd/topology.yaml", p, cfg.ID, cfg.Site)
				continue
			}
			// Under etcd the upstream comes from the topology; stand in
			// what it says so Validate checks the rest.
			if cfg.Upstream == "" {
				if spec.Upstream == topology.UpstreamMaster {
					cfg.Upstream = "redis://" + top.Nodes[top.Master].RedisAddr
				} else {
					cfg.Upstream = "arbor://" + top.Relays[spec.Upstream].GRPCAddr
				}
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s: %v", p, err)
			}
			if cfg.TLS.Plaintext || cfg.TLS.CAFile == "" {
				t.Errorf("%s: no mutual TLS", p)
			}
		case strings.HasPrefix(name, "node-"):
			roles["node"]++
			ef, err := loadNodeConfig(t, p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if err := ef.validate(); err != nil || ef.cacert == "" || ef.cert == "" {
				t.Errorf("%s: etcd settings (%v): want endpoints, a cluster and client certificates", p, err)
			}
			id := strings.TrimSuffix(strings.TrimPrefix(name, "node-"), ".yaml")
			if _, ok := top.Nodes[id]; !ok {
				t.Errorf("%s: node %s is not in deploy/systemd/topology.yaml", p, id)
			}
		default:
			t.Errorf("%s: want relay-<id>.yaml or node-<id>.yaml", p)
		}
	}
	if roles["relay"] < 2 || roles["node"] < 2 {
		t.Errorf("example configs %v: want a root relay, a relay following a parent, a candidate and a plain node", roles)
	}
}

// TestConfigFileRefusesUnknownKeys: a key that is no flag of the command (a
// typo, another command's flag) is refused naming it, for both daemons, and
// a flag on the command line still wins over the file.
func TestConfigFileRefusesUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	relayTypo := write("relay.yaml", "id: r1\ndata-dri: /tmp/x\nupstream: redis://127.0.0.1:6379\n")
	_, err := loadRelayConfig(t, relayTypo)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "data-dri" || !errors.Is(err, ErrUnknownSetting) || ce.Path != relayTypo {
		t.Fatalf("relay config with data-dri: %v, want a ConfigError naming the key", err)
	}
	nodeKey := write("node.yaml", "id: n1\ncluster: c\nlease-ttl: 5s\ndata-dir: /var/lib/arbor\n")
	if _, err := loadNodeConfig(t, nodeKey); !errors.As(err, &ce) || ce.Key != "data-dir" || !errors.Is(err, ErrUnknownSetting) {
		t.Fatalf("node config with a relay's data-dir: %v, want ErrUnknownSetting naming data-dir", err)
	}
	nested := write("nested.yaml", "id: n1\ncluster: {name: c}\n")
	if _, err := loadNodeConfig(t, nested); !errors.As(err, &ce) || ce.Key != "cluster" || errors.Is(err, ErrUnknownSetting) {
		t.Fatalf("node config with a mapping value: %v, want a ConfigError naming cluster", err)
	}
	null := write("null.yaml", "id: r1\nsite:\n")
	if _, err := loadRelayConfig(t, null); !errors.As(err, &ce) || ce.Key != "site" {
		t.Fatalf("relay config with an empty value: %v, want a ConfigError naming site", err)
	}
	good := write("good.yaml", "id: r1\ndata-dir: /tmp/x\nupstream: redis://127.0.0.1:6379\nsnapshot-source: [127.0.0.1:7001, 127.0.0.1:7002]\nplaintext: true\nlog-level: warn\n")
	cfg, err := loadRelayConfig(t, good, "--id", "r2")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "r2" || cfg.DataDir != "/tmp/x" || !slices.Equal(cfg.SnapshotSources, []string{"127.0.0.1:7001", "127.0.0.1:7002"}) || !cfg.TLS.Plaintext {
		t.Fatalf("config loaded as %+v: want the flag's id and the file's other settings", cfg)
	}
}

// parseCommandLine checks that args (an arbor command line from a compose
// file, a manifest or a unit) name a real command and only its flags.
func parseCommandLine(t *testing.T, where string, args []string) {
	t.Helper()
	root := newRootCmd()
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Errorf("%s: %q: no such arbor command (%v)", where, args, err)
		return
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("%s: arbor %s: %v", where, cmd.Name(), err)
	}
}

// flagValues returns the values of the flags of args that hold file paths
// under prefix.
func flagValues(args []string, prefix string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, prefix) {
			out = append(out, a)
		}
	}
	return out
}

// topLevelKind matches the kind of each object kubectl kustomize prints.
var topLevelKind = regexp.MustCompile(`(?m)^kind: `)

var composeVar = regexp.MustCompile(`\$\{[A-Z_]+(:?[-?][^}]*)?\}`)

func anyStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// makeTestCA runs deploy/tls/make-test-ca.sh into a new directory.
func makeTestCA(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed (apt-get install openssl): make-test-ca.sh needs it")
	}
	dir := filepath.Join(t.TempDir(), "tls")
	cmd := exec.Command("bash", append([]string{filepath.Join(deployDir, "tls", "make-test-ca.sh"), "-o", dir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make-test-ca.sh %v: %v\n%s", args, err, out)
	}
	return dir
}

// checkRelayCerts checks the relay certificates in dir against a topology:
// each is signed by the CA, names its relay (the URI SAN the parent checks)
// and the host its children dial (the host of its grpc_addr).
func checkRelayCerts(t *testing.T, dir string, top *topology.Topology) {
	t.Helper()
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem: %v", err)
	}
	for id, r := range top.Relays {
		b, err := os.ReadFile(filepath.Join(dir, id+".pem"))
		if err != nil {
			t.Errorf("relay %s: %v", id, err)
			continue
		}
		blk, _ := pem.Decode(b)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		host, _, _ := net.SplitHostPort(r.GRPCAddr)
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("relay %s: its certificate does not serve %s: %v", id, host, err)
		}
		if !slices.ContainsFunc(cert.URIs, func(u *url.URL) bool { return u.String() == "arbor://relay/"+id }) {
			t.Errorf("relay %s: no URI SAN arbor://relay/%s in %v", id, id, cert.URIs)
		}
	}
}

func TestDeployCompose(t *testing.T) {
	path := filepath.Join(deployDir, "compose", "compose.yaml")
	docs := yamlDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", path, len(docs))
	}
	c := docs[0]
	for k := range c {
		if !slices.Contains([]string{"name", "services", "volumes", "networks", "secrets", "configs"}, k) && !strings.HasPrefix(k, "x-") {
			t.Errorf("%s: unknown top-level key %q", path, k)
		}
	}
	services, _ := c["services"].(map[string]any)
	volumes, _ := c["volumes"].(map[string]any)
	top := readTopology(t, filepath.Join(deployDir, "compose", "topology.yaml"))
	tlsDir := makeTestCA(t) // the default set is the seed topology's
	checkRelayCerts(t, tlsDir, top)
	for name, v := range services {
		s, _ := v.(map[string]any)
		if str(s, "image") == "" && s["build"] == nil {
			t.Errorf("service %s: no image", name)
		}
		deps, _ := s["depends_on"].(map[string]any)
		for d := range deps {
			if _, ok := services[d]; !ok {
				t.Errorf("service %s depends on %s, which is not a service", name, d)
			}
		}
		for _, m := range anyStrings(s["volumes"]) {
			src := strings.SplitN(m, ":", 2)[0]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(deployDir, "compose", src)); err != nil && src != "./tls" {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
				continue
			}
			if _, ok := volumes[src]; !ok {
				t.Errorf("service %s: volume %s not declared", name, src)
			}
		}
		if str(s, "image") != "arbor:dev" {
			continue
		}
		args := anyStrings(s["command"])
		for i, a := range args {
			args[i] = composeVar.ReplaceAllString(a, "secret")
		}
		parseCommandLine(t, "compose service "+name, args)
		for _, f := range flagValues(args, "/etc/arbor/tls/") {
			if _, err := os.Stat(filepath.Join(tlsDir, strings.TrimPrefix(f, "/etc/arbor/tls/"))); err != nil {
				t.Errorf("service %s: make-test-ca.sh makes no %s", name, f)
			}
		}
	}
	// Every node and relay of the topology runs, under its id.
	for id := range top.Nodes {
		if _, ok := services["agent-"+strings.ToLower(id)]; !ok {
			t.Errorf("node %s has no agent service", id)
		}
		host, _, _ := net.SplitHostPort(top.Nodes[id].RedisAddr)
		if _, ok := services[host]; !ok {
			t.Errorf("node %s: no service %s", id, host)
		}
	}
	for id := range top.Relays {
		if _, ok := services[id]; !ok {
			t.Errorf("relay %s has no service", id)
		}
	}
}

// TestDeployComposeSchema validates the compose file against the Compose
// Specification's schema, offline, with compose-go (tools/composecheck, the
// loader docker compose itself uses), and checks that the validator does
// refuse a file with an unknown key.
func TestDeployComposeSchema(t *testing.T) {
	bin := buildTool(t, "composecheck")
	check := func(path string) (string, error) {
		cmd := exec.Command(bin, path)
		cmd.Env = append(os.Environ(), "ARBOR_REDIS_PASSWORD=secret")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	path, err := filepath.Abs(filepath.Join(deployDir, "compose", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := check(path); err != nil || !strings.Contains(out, "24 services") {
		t.Fatalf("composecheck %s: %v\n%s", path, err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(b), "stop_grace_period:", "stop_grace_periode:", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := check(bad); err == nil || !strings.Contains(out, "stop_grace_periode") {
		t.Fatalf("composecheck accepted an unknown key: %v\n%s", err, out)
	}
}

// buildTool builds a command of the tools module (tools/NAME).
func buildTool(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "-C", filepath.Join("..", "..", "tools"), "build", "-o", bin, "./"+name)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build tools/%s: %v\n%s", name, err, out)
	}
	return bin
}

// TestDeployKubernetesSchema decodes every manifest strictly into the
// Kubernetes API types, offline (tools/k8scheck), and checks that a
// misspelt field is refused.
func TestDeployKubernetesSchema(t *testing.T) {
	bin := buildTool(t, "k8scheck")
	var files []string
	for _, p := range deployFiles(t, ".yaml") {
		if filepath.Base(filepath.Dir(p)) == "k8s" && filepath.Base(p) != "kustomization.yaml" {
			files = append(files, p)
		}
	}
	out, err := exec.Command(bin, files...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d objects valid, 0 invalid", len(k8sObjects(t)))) {
		t.Fatalf("k8scheck %v: %v\n%s", files, err, out)
	}
	b, err := os.ReadFile(filepath.Join(deployDir, "k8s", "relays.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "relays.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(b), "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "terminationGracePeriodSecond") {
		t.Fatalf("k8scheck accepted a misspelt field: %v\n%s", err, out)
	}
}

func TestDeployKubernetes(t *testing.T) {
	objs := k8sObjects(t)
	top := readTopology(t, k8sTopologyFile(t))
	named := map[string]map[string]any{} // kind/name -> object
	for _, o := range objs {
		named[str(o, "kind")+"/"+str(o, "metadata", "name")] = o
	}
	// The relays' and nodes' certificates, as deploy/README.md makes them.
	var caArgs []string
	for id, r := range top.Relays {
		host, _, _ := net.SplitHostPort(r.GRPCAddr)
		caArgs = append(caArgs, "--relay", id+"="+host)
	}
	for id := range top.Nodes {
		caArgs = append(caArgs, "--node", id)
	}
	tlsDir := makeTestCA(t, caArgs...)
	checkRelayCerts(t, tlsDir, top)

	ids := map[string]string{} // relay or node id -> site, from the StatefulSets
	for _, o := range objs {
		kind, name := str(o, "kind"), str(o, "metadata", "name")
		switch kind {
		case "StatefulSet":
			if named["Service/"+str(o, "spec", "serviceName")] == nil {
				t.Errorf("StatefulSet %s: no Service %s", name, str(o, "spec", "serviceName"))
			}
			if len(o["spec"].(map[string]any)["volumeClaimTemplates"].([]any)) == 0 {
				t.Errorf("StatefulSet %s: no volumeClaimTemplates", name)
			}
			n, _ := o["spec"].(map[string]any)["replicas"].(int)
			site := str(o, "spec", "template", "metadata", "labels", "arbor/site")
			for i := range n {
				ids[name+"-"+strconv.Itoa(i)] = site
			}
			if named["PodDisruptionBudget/"+name] == nil {
				t.Errorf("StatefulSet %s: no PodDisruptionBudget", name)
			}
			checkPodSpec(t, name, o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any), n, tlsDir, named)
		case "Job":
			checkPodSpec(t, name, o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any), 1, tlsDir, named)
		}
	}
	for id, r := range top.Relays {
		if site, ok := ids[id]; !ok || site != r.Site {
			t.Errorf("relay %s (site %s): no pod of that name and site in the StatefulSets", id, r.Site)
		}
	}
	for id, n := range top.Nodes {
		if site, ok := ids[id]; !ok || site != n.Site {
			t.Errorf("node %s (site %s): no pod of that name and site in the StatefulSets", id, n.Site)
		}
	}
	if len(ids) != len(top.Relays)+len(top.Nodes) {
		t.Errorf("the StatefulSets run %d pods, the topology has %d relays and nodes", len(ids), len(top.Relays)+len(top.Nodes))
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "kustomize", filepath.Join(deployDir, "k8s")).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize deploy/k8s: %v\n%s", err, out)
		} else if got := len(topLevelKind.FindAll(out, -1)); got != len(objs) {
			t.Errorf("kubectl kustomize deploy/k8s renders %d objects, the manifests hold %d", got, len(objs))
		}
	} else {
		t.Log("kubectl not installed: kustomization not rendered")
	}
}

// checkPodSpec checks a pod template: every arbor container's args are a
// real command line, each pod's certificates exist, resources are set,
// ConfigMaps referenced exist.
func checkPodSpec(t *testing.T, owner string, spec map[string]any, replicas int, tlsDir string, named map[string]map[string]any) {
	t.Helper()
	mounts := map[string]string{} // mount path -> volume
	for _, c := range spec["containers"].([]any) {
		c := c.(map[string]any)
		where := owner + "/" + str(c, "name")
		if c["resources"] == nil {
			t.Errorf("%s: no resources", where)
		}
		for _, m := range c["volumeMounts"].([]any) {
			mounts[str(m.(map[string]any), "mountPath")] = str(m.(map[string]any), "name")
		}
		for _, e := range anySlice(c["envFrom"]) {
			if cm := str(e.(map[string]any), "configMapRef", "name"); cm != "" && named["ConfigMap/"+cm] == nil {
				t.Errorf("%s: ConfigMap %s is not in the manifests", where, cm)
			}
		}
		if str(c, "image") != "arbor:dev" {
			continue
		}
		for i := range replicas {
			pod := owner + "-" + strconv.Itoa(i)
			args := anyStrings(c["args"])
			for j, a := range args {
				args[j] = strings.NewReplacer("$(POD_NAME)", pod, "$(REDIS_PASSWORD)", "secret").Replace(a)
			}
			parseCommandLine(t, where, args)
			for _, dir := range []string{"/etc/arbor/tls/", "/etc/arbor/etcd/"} {
				for _, f := range flagValues(args, dir) {
					if _, err := os.Stat(filepath.Join(tlsDir, strings.TrimPrefix(f, dir))); err != nil {
						t.Errorf("%s (pod %s): make-test-ca.sh makes no %s", where, pod, f)
					}
					if mounts[strings.TrimSuffix(dir, "/")] == "" {
						t.Errorf("%s: %s is not mounted", where, dir)
					}
				}
			}
		}
	}
}

func anySlice(v any) []any { s, _ := v.([]any); return s }

// TestDeploySystemdUnits runs systemd-analyze verify on each unit, with
// ExecStart pointed at an executable that exists here (verify refuses a
// unit whose binary is missing), and checks the hardening is there.
func TestDeploySystemdUnits(t *testing.T) {
	units := deployFiles(t, ".service")
	want := []string{"User=arbor", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
		"CapabilityBoundingSet=\n", "Restart=on-failure", "RestartSec=", "LimitNOFILE=", "EnvironmentFile=-/etc/arbor/%i.env",
		"--config /etc/arbor/%i.yaml", "KillSignal=SIGTERM", "TimeoutStopSec="}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: no %q", u, strings.TrimSpace(w))
			}
		}
		if strings.Contains(filepath.Base(u), "relay") && !strings.Contains(string(b), "ReadWritePaths=/var/lib/arbor/%i") {
			t.Errorf("%s: the data dir is not writable", u)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if cmd, ok := strings.CutPrefix(l, "ExecStart=/usr/local/bin/arbor "); ok {
				parseCommandLine(t, u, strings.Fields(strings.ReplaceAll(cmd, "%i", "x")))
			}
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: unit files checked only for their directives")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, u := range units {
		b, _ := os.ReadFile(u)
		// An instance of the template, as systemctl would load it.
		inst := filepath.Join(dir, strings.Replace(filepath.Base(u), "@.", "@deploytest.", 1))
		if err := os.WriteFile(inst, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/arbor", self)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", inst).CombinedOutput()
		if err != nil || strings.Contains(string(out), filepath.Base(inst)) {
			t.Errorf("systemd-analyze verify %s: %v\n%s", filepath.Base(u), err, out)
		}
	}
}

// TestMakeTestCAMutualTLS: the test CA's certificates work in a real relay
// tree: relay-b follows relay-a1 over mutual-TLS gRPC and a stock replica of
// relay-b gets the master's data; the operator certificate reads health and
// Status (what grpcurl does) but cannot subscribe as a relay.
func TestMakeTestCAMutualTLS(t *testing.T) {
	noLeaks(t)
	dir := makeTestCA(t)
	master := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := redistest.LoadAllTypes(ctx, master.Client(), redistest.LoadOptions{SmallKeys: 200, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	tlsOf := func(id string) relay.TLSConfig {
		return relay.TLSConfig{CertFile: filepath.Join(dir, id+".pem"), KeyFile: filepath.Join(dir, id+"-key.pem"), CAFile: filepath.Join(dir, "ca.pem")}
	}
	start := func(id, site, upstream string) *relay.Relay {
		cfg := relay.DefaultConfig()
		cfg.ID, cfg.Site, cfg.DataDir, cfg.Upstream = id, site, t.TempDir(), upstream
		cfg.RedisAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.TLS = tlsOf(id)
		cfg.Logger = slog.New(slog.DiscardHandler)
		r, err := relay.New(cfg)
		if err != nil {
			t.Fatalf("relay %s: %v", id, err)
		}
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); r.Run(rctx) }()
		t.Cleanup(func() { stop(); <-done })
		return r
	}
	root := start("relay-a1", "A", "redis://"+master.Addr)
	child := start("relay-b", "B", "arbor://"+root.GRPCAddr().String())
	rep := redistest.Start(t)
	port := child.RedisAddr().(*net.TCPAddr).Port
	if err := rep.ReplicaOf(ctx, "127.0.0.1", port); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, master, rep)

	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "operator.pem"), filepath.Join(dir, "operator-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(root.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13,
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health with the operator certificate: %v %v", h, err)
	}
	cli := arborv1.NewRelayServiceClient(conn)
	st, err := cli.Status(ctx, &arborv1.StatusRequest{})
	if err != nil {
		t.Fatalf("Status with the operator certificate: %v", err)
	}
	if !strings.Contains(st.String(), "relay-b") {
		t.Errorf("relay-a1's Status does not list relay-b as a child: %v", st)
	}
	stream, err := cli.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&arborv1.SyncRequest{Frame: &arborv1.SyncRequest_Subscribe{Subscribe: &arborv1.Subscribe{RelayId: "relay-b", Site: "B"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the operator subscribing as relay-b: %v, want PermissionDenied", err)
	}
}
