package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// fileTopology is the YAML form of a whole topology, as `arbor topology
// apply -f` reads it and `arbor topology get` writes it:
//
//	master: A-Master
//	sites:
//	  A: {description: the writing site}
//	relays:
//	  relay-a1: {site: A, grpc_addr: "127.0.0.1:7101", redis_addr: "127.0.0.1:7201", upstream: master}
//	nodes:
//	  A-Master: {site: A, redis_addr: "127.0.0.1:7001", candidate: true, priority: 100}
//	  A-S-1:    {site: A, redis_addr: "127.0.0.1:7004", follow: relay-a1}
//
// Field names are those of the etcd values.
type fileTopology struct {
	Master string               `yaml:"master,omitempty"`
	Sites  map[string]fileSite  `yaml:"sites"`
	Relays map[string]fileRelay `yaml:"relays"`
	Nodes  map[string]fileNode  `yaml:"nodes"`
}

type fileSite struct {
	Description string `yaml:"description,omitempty"`
}

type fileRelay struct {
	Site      string `yaml:"site"`
	GRPCAddr  string `yaml:"grpc_addr,omitempty"`
	RedisAddr string `yaml:"redis_addr"`
	Upstream  string `yaml:"upstream"`
}

type fileNode struct {
	Site      string `yaml:"site"`
	RedisAddr string `yaml:"redis_addr"`
	Candidate bool   `yaml:"candidate,omitempty"`
	Priority  int32  `yaml:"priority,omitempty"`
	Follow    string `yaml:"follow,omitempty"`
}

// ParseYAML decodes the YAML form of a whole topology (see fileTopology)
// strictly: unknown fields and keys given twice are errors. It then
// validates the topology and, if that fails, returns it with the
// *ValidationError.
func ParseYAML(b []byte) (*Topology, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f fileTopology
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("topology file: empty")
		}
		return nil, fmt.Errorf("topology file: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("topology file: more than one YAML document")
	}
	t := New()
	t.Master = f.Master
	for name, s := range f.Sites {
		t.Sites[name] = Site{Name: name, Description: s.Description}
	}
	for id, r := range f.Relays {
		t.Relays[id] = RelaySpec{ID: id, Site: r.Site, GRPCAddr: r.GRPCAddr, RedisAddr: r.RedisAddr, Upstream: r.Upstream}
	}
	for id, n := range f.Nodes {
		t.Nodes[id] = NodeSpec{ID: id, Site: n.Site, RedisAddr: n.RedisAddr, Candidate: n.Candidate, Priority: n.Priority, Follow: n.Follow}
	}
	return t, Validate(t)
}

// MarshalYAML encodes t in the YAML form ParseYAML reads.
func MarshalYAML(t *Topology) ([]byte, error) {
	f := fileTopology{
		Master: t.Master,
		Sites:  map[string]fileSite{},
		Relays: map[string]fileRelay{},
		Nodes:  map[string]fileNode{},
	}
	for name, s := range t.Sites {
		f.Sites[name] = fileSite{Description: s.Description}
	}
	for id, r := range t.Relays {
		f.Relays[id] = fileRelay{Site: r.Site, GRPCAddr: r.GRPCAddr, RedisAddr: r.RedisAddr, Upstream: r.Upstream}
	}
	for id, n := range t.Nodes {
		f.Nodes[id] = fileNode{Site: n.Site, RedisAddr: n.RedisAddr, Candidate: n.Candidate, Priority: n.Priority, Follow: n.Follow}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&f); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
