package wan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// subnetPrefix is the /24 the hub bridges. It is assigned only inside the
// namespaces a Network creates, so it never collides with or reaches any
// network the host is on.
const subnetPrefix = "10.251.0."

// siteDev is the name of a site's uplink inside its own namespace.
const siteDev = "wan0"

// hubBridgeDev is the Linux bridge inside the hub namespace.
const hubBridgeDev = "hub0"

// Site is one site of a Network: a network namespace with one uplink to the
// hub.
type Site struct {
	Name string // as passed to NewNetwork
	NS   string // namespace name, for "ip netns exec" and "ip -n"
	IP   string // the site's address, reachable from every other site

	hubDev string // the site's port on the hub bridge, inside the hub namespace
}

// NetworkOptions configures NewNetwork. The zero value is usable.
type NetworkOptions struct {
	// ID names the network: namespaces are "arbw-<ID>-<site>" and
	// "arbw-<ID>-hub". Empty means a random six-digit hex id.
	ID string
	// TBFBurst is the tbf bucket size SetBandwidth uses; default "64kb".
	TBFBurst string
	// TBFLatency is the tbf queue bound SetBandwidth uses; default "50ms".
	TBFLatency string
}

// Network is a set of sites, each in its own network namespace, joined by
// veth pairs to one Linux bridge in a hub namespace. It needs root and the
// ip and tc commands of iproute2.
//
// Its methods are safe for concurrent use. Close deletes every namespace; a
// process started with Exec keeps its namespace alive until it exits, so
// stop such processes first.
type Network struct {
	id         string
	hubNS      string
	sites      []Site
	byName     map[string]int
	tbfBurst   string
	tbfLatency string

	mu      sync.Mutex
	created []string // namespaces to delete in Close
	closed  bool
}

var (
	siteNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	idRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,15}$`)
	tcValueRE  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?[a-zA-Z]*$`)
)

// NewNetwork creates one namespace per site plus the hub and connects them.
// Site i gets the address 10.251.0.(i+1). On error everything created so far
// is deleted. The caller must call Close.
func NewNetwork(ctx context.Context, sites []string, opts NetworkOptions) (*Network, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("network namespaces on %s: %w", runtime.GOOS, errors.ErrUnsupported)
	}
	if len(sites) == 0 || len(sites) > 250 {
		return nil, fmt.Errorf("sites: got %d, want 1 to 250", len(sites))
	}
	n := &Network{
		id:         opts.ID,
		byName:     make(map[string]int, len(sites)),
		tbfBurst:   opts.TBFBurst,
		tbfLatency: opts.TBFLatency,
	}
	if n.id == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		n.id = hex.EncodeToString(b[:])
	}
	if !idRE.MatchString(n.id) {
		return nil, fmt.Errorf("id %q: want 1-16 of [a-z0-9_-]", n.id)
	}
	if n.tbfBurst == "" {
		n.tbfBurst = "64kb"
	}
	if n.tbfLatency == "" {
		n.tbfLatency = "50ms"
	}
	for _, v := range []string{n.tbfBurst, n.tbfLatency} {
		if !tcValueRE.MatchString(v) {
			return nil, fmt.Errorf("tbf parameter %q: want a number with a tc unit", v)
		}
	}
	n.hubNS = "arbw-" + n.id + "-hub"
	for i, name := range sites {
		if !siteNameRE.MatchString(name) || name == "hub" {
			return nil, fmt.Errorf("site %q: want 1-32 of [a-z0-9_-], not \"hub\"", name)
		}
		if _, dup := n.byName[name]; dup {
			return nil, fmt.Errorf("site %q: duplicate", name)
		}
		n.byName[name] = i
		n.sites = append(n.sites, Site{
			Name:   name,
			NS:     "arbw-" + n.id + "-" + name,
			IP:     subnetPrefix + strconv.Itoa(i+1),
			hubDev: "s" + strconv.Itoa(i),
		})
	}
	if err := n.build(ctx); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

func (n *Network) build(ctx context.Context) error {
	if err := n.addNS(ctx, n.hubNS); err != nil {
		return err
	}
	if err := n.ip(ctx, "-n", n.hubNS, "link", "add", hubBridgeDev, "type", "bridge"); err != nil {
		return err
	}
	if err := n.ip(ctx, "-n", n.hubNS, "link", "set", hubBridgeDev, "up"); err != nil {
		return err
	}
	for _, s := range n.sites {
		if err := n.addNS(ctx, s.NS); err != nil {
			return err
		}
		// Both ends are created directly inside their namespaces: nothing is
		// ever added to the host's namespace.
		steps := [][]string{
			{"link", "add", siteDev, "netns", s.NS, "type", "veth", "peer", "name", s.hubDev, "netns", n.hubNS},
			{"-n", n.hubNS, "link", "set", s.hubDev, "master", hubBridgeDev},
			{"-n", n.hubNS, "link", "set", s.hubDev, "up"},
			{"-n", s.NS, "addr", "add", s.IP + "/24", "dev", siteDev},
			{"-n", s.NS, "link", "set", "lo", "up"},
			{"-n", s.NS, "link", "set", siteDev, "up"},
		}
		for _, args := range steps {
			if err := n.ip(ctx, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

func (n *Network) addNS(ctx context.Context, ns string) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return errors.New("network closed")
	}
	if err := n.ip(ctx, "netns", "add", ns); err != nil {
		return err
	}
	n.mu.Lock()
	n.created = append(n.created, ns)
	n.mu.Unlock()
	return nil
}

// ID returns the id that prefixes the network's namespace names.
func (n *Network) ID() string { return n.id }

// Sites returns the sites in the order given to NewNetwork.
func (n *Network) Sites() []Site { return append([]Site(nil), n.sites...) }

// Site returns the named site.
func (n *Network) Site(name string) (Site, bool) {
	i, ok := n.byName[name]
	if !ok {
		return Site{}, false
	}
	return n.sites[i], true
}

func (n *Network) site(name string) (Site, error) {
	s, ok := n.Site(name)
	if !ok {
		return Site{}, fmt.Errorf("unknown site %q", name)
	}
	return s, nil
}

// Exec returns a command that runs name with args inside the site's
// namespace through "ip netns exec", which execs name in place, so the
// command's process is the program itself. For an unknown site the command
// fails to start.
func (n *Network) Exec(site, name string, args ...string) *exec.Cmd {
	argv, err := n.execArgs(site, name, args)
	cmd := exec.Command("ip", argv...)
	if err != nil {
		cmd.Err = err
	}
	return cmd
}

// ExecContext is Exec with a context that kills the process when done.
func (n *Network) ExecContext(ctx context.Context, site, name string, args ...string) *exec.Cmd {
	argv, err := n.execArgs(site, name, args)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	if err != nil {
		cmd.Err = err
	}
	return cmd
}

func (n *Network) execArgs(site, name string, args []string) ([]string, error) {
	s, err := n.site(site)
	return append([]string{"netns", "exec", s.NS, name}, args...), err
}

// SetBandwidth shapes the site's egress (its uplink toward the hub) with tbf
// at rate, in tc units such as "100mbit" or "12500kbps". An empty rate
// removes the limit.
func (n *Network) SetBandwidth(site, rate string) error {
	s, err := n.site(site)
	if err != nil {
		return err
	}
	return n.shape(s.NS, siteDev, rate)
}

// SetIngressBandwidth shapes what the site receives (the hub's port toward
// the site) with tbf at rate; an empty rate removes the limit.
func (n *Network) SetIngressBandwidth(site, rate string) error {
	s, err := n.site(site)
	if err != nil {
		return err
	}
	return n.shape(n.hubNS, s.hubDev, rate)
}

func (n *Network) shape(ns, dev, rate string) error {
	if rate == "" {
		err := run(exec.Command("tc", "-n", ns, "qdisc", "del", "dev", dev, "root"))
		if err != nil && strings.Contains(err.Error(), "handle of zero") {
			return nil // no qdisc was installed
		}
		return err
	}
	if !tcValueRE.MatchString(rate) {
		return fmt.Errorf("rate %q: want a number with a tc unit, such as 100mbit", rate)
	}
	return run(exec.Command("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root",
		"tbf", "rate", rate, "burst", n.tbfBurst, "latency", n.tbfLatency))
}

// Cut takes the site's link down at the hub: packets to and from the site
// are dropped, but sockets stay open, so TCP connections resume if Restore
// comes before they time out. (Bridge.Cut, by contrast, resets them.)
func (n *Network) Cut(site string) error {
	s, err := n.site(site)
	if err != nil {
		return err
	}
	return run(exec.Command("ip", "-n", n.hubNS, "link", "set", s.hubDev, "down"))
}

// Restore brings a site's link back up after Cut.
func (n *Network) Restore(site string) error {
	s, err := n.site(site)
	if err != nil {
		return err
	}
	return run(exec.Command("ip", "-n", n.hubNS, "link", "set", s.hubDev, "up"))
}

// Listen opens a TCP listener inside the site's namespace, for example on
// Site.IP+":0". The caller owns the listener.
func (n *Network) Listen(site, addr string) (net.Listener, error) {
	s, err := n.site(site)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	err = inNamespace(s.NS, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s in %s: %w", addr, site, err)
	}
	return ln, nil
}

// DialContext connects from inside the site's namespace. addr must be a
// numeric IP and port.
func (n *Network) DialContext(ctx context.Context, site, network, addr string) (net.Conn, error) {
	s, err := n.site(site)
	if err != nil {
		return nil, err
	}
	var c net.Conn
	err = inNamespace(s.NS, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, site, err)
	}
	return c, nil
}

// Dialer returns a DialFunc that dials from inside the site, for WithDialer.
func (n *Network) Dialer(site string) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return n.DialContext(ctx, site, network, addr)
	}
}

// Close deletes every namespace the network created, and with them their
// interfaces and qdiscs. It is safe to call more than once and after a failed
// NewNetwork.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	created := n.created
	n.created = nil
	n.mu.Unlock()
	var errs []error
	for i := len(created) - 1; i >= 0; i-- {
		// No context: deletion must run even when the caller's is done.
		if err := run(exec.Command("ip", "netns", "del", created[i])); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Network) ip(ctx context.Context, args ...string) error {
	return run(exec.CommandContext(ctx, "ip", args...))
}

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %s: %w", strings.Join(cmd.Args, " "), strings.TrimSpace(string(out)), err)
	}
	return nil
}
