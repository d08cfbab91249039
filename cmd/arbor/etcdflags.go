package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbor-fabric/arbor/topology"
)

// Environment variables the etcd flags default to.
const (
	etcdEndpointsEnv = "ARBOR_ETCD"
	etcdClusterEnv   = "ARBOR_CLUSTER"
	etcdPasswordEnv  = "ARBOR_ETCD_PASSWORD"
)

// etcdFlags are the flags of every command that talks to etcd: where etcd
// is, which cluster, and how to authenticate.
type etcdFlags struct {
	endpoints   string
	cluster     string
	cacert      string
	cert        string
	key         string
	user        string
	password    string
	dialTimeout time.Duration
}

// addEtcdFlags registers the etcd flags on fs. Commands that need etcd call
// client (which validates them); a command that also works without etcd
// checks enabled first.
func addEtcdFlags(fs *pflag.FlagSet) *etcdFlags {
	f := &etcdFlags{}
	fs.StringVar(&f.endpoints, "etcd", os.Getenv(etcdEndpointsEnv), "etcd endpoints, comma-separated (host:port or URL; default $"+etcdEndpointsEnv+")")
	fs.StringVar(&f.cluster, "cluster", os.Getenv(etcdClusterEnv), "cluster name: keys live under /arbor/<cluster>/ (default $"+etcdClusterEnv+")")
	fs.StringVar(&f.cacert, "etcd-cacert", "", "CA bundle to verify etcd's certificate (enables TLS)")
	fs.StringVar(&f.cert, "etcd-cert", "", "client certificate for etcd (with --etcd-key)")
	fs.StringVar(&f.key, "etcd-key", "", "client key for etcd (with --etcd-cert)")
	fs.StringVar(&f.user, "etcd-user", "", "etcd user (password from --etcd-password or $"+etcdPasswordEnv+")")
	fs.StringVar(&f.password, "etcd-password", "", "etcd password (or $"+etcdPasswordEnv+")")
	fs.DurationVar(&f.dialTimeout, "etcd-dial-timeout", 5*time.Second, "bound on connecting to etcd")
	return f
}

// enabled reports whether etcd endpoints were given.
func (f *etcdFlags) enabled() bool { return strings.TrimSpace(f.endpoints) != "" }

// endpointList splits --etcd.
func (f *etcdFlags) endpointList() []string {
	var out []string
	for _, e := range strings.Split(f.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// validate checks the flags of a command that needs etcd.
func (f *etcdFlags) validate() error {
	var errs []error
	if len(f.endpointList()) == 0 {
		errs = append(errs, errors.New("--etcd: required (comma-separated endpoints, or $"+etcdEndpointsEnv+")"))
	}
	if f.cluster == "" {
		errs = append(errs, errors.New("--cluster: required (or $"+etcdClusterEnv+")"))
	} else if strings.ContainsAny(f.cluster, "/ ") {
		errs = append(errs, fmt.Errorf("--cluster %q: no '/' or spaces", f.cluster))
	}
	if (f.cert == "") != (f.key == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key: give both or neither"))
	}
	if f.user == "" && f.password != "" {
		errs = append(errs, errors.New("--etcd-password without --etcd-user"))
	}
	return errors.Join(errs...)
}

// client connects to etcd as the flags say. The caller closes the client.
// It does not wait for etcd: a client made while etcd is away connects
// when it comes back, and reconnects within about a second of any outage
// (topology.DialOptions).
func (f *etcdFlags) client() (*clientv3.Client, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	cfg := clientv3.Config{
		Endpoints:   f.endpointList(),
		DialTimeout: f.dialTimeout,
		DialOptions: topology.DialOptions(),
		Logger:      zap.NewNop(),
	}
	if f.user != "" {
		cfg.Username = f.user
		cfg.Password = f.password
		if cfg.Password == "" {
			cfg.Password = os.Getenv(etcdPasswordEnv)
		}
	}
	if f.cacert != "" || f.cert != "" {
		tc, err := f.tlsConfig()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

// connect is client for daemons (arbor node, arbor relay): with
// --etcd-user the client must reach etcd to start, so while etcd cannot be
// reached it retries every second until ctx ends, logging each distinct
// error. Other errors (bad flags, files, credentials) are returned at once.
func (f *etcdFlags) connect(ctx context.Context, log *slog.Logger) (*clientv3.Client, error) {
	last := ""
	for {
		cli, err := f.client()
		if err == nil {
			return cli, nil
		}
		if !errors.Is(err, context.DeadlineExceeded) && status.Code(errors.Unwrap(err)) != codes.Unavailable {
			return nil, err
		}
		if err.Error() != last {
			log.Warn("etcd not reachable yet; retrying", "etcd", f.endpoints, "err", err)
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// tlsConfig builds the client TLS configuration from the files given.
func (f *etcdFlags) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.cacert != "" {
		pem, err := os.ReadFile(f.cacert)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-cacert %s: no PEM certificates", f.cacert)
		}
		tc.RootCAs = pool
	}
	if f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
