// Package wan simulates wide-area links between Arbor sites for tests and
// benchmarks.
//
// A Bridge is a TCP proxy on loopback that stands for one inter-site link:
// it adds one-way latency per direction through a delay line, shapes each
// direction with a token bucket shared by all of its connections (a site's
// uplink), and can cut, pause, blackhole and restore the link. It needs no
// privileges and works on any OS.
//
// A Network (Linux, root only) builds real network namespaces, one per site,
// joined by veth pairs to a Linux bridge in a hub namespace, so that
// processes such as redis-server run inside a site and traffic between sites
// crosses a tbf-shaped interface. Every address it assigns (10.251.0.0/24)
// exists only inside the namespaces it creates; no interface, route or
// packet of the Network touches the host's own namespace. The kernel this
// package was written on has no netem, so added latency between namespaces
// comes from a Bridge whose listener and dialer live in the namespaces
// (Network.Listen, Network.Dialer, WithListener, WithDialer).
//
// Everything a Bridge or a Network starts ends in Close.
package wan
