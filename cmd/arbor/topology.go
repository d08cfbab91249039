package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/topology"
)

// topologyTimeout bounds one topology command's work with etcd.
const topologyTimeout = 30 * time.Second

func newTopologyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Write, read and check the cluster's topology (sites, relays, nodes, master)",
		Long: `The topology is the declared shape of a cluster: its sites, its relays (with
their upstream: "master", a parent relay, or redis://host:port), its nodes
(with the relay or node each follows, and whether it is a master candidate and
with which priority), and which node is the master. It lives in etcd under
/arbor/<cluster>/topology/, one JSON value per key, and can be edited there
with etcdctl; these commands handle it as one YAML file.

The file (see deploy/topology.yaml):

  master: A-Master
  sites:
    A: {description: primary site}
  relays:
    relay-a1: {site: A, grpc_addr: "127.0.0.1:7500", redis_addr: "127.0.0.1:7100", upstream: master}
  nodes:
    A-Master: {site: A, redis_addr: "127.0.0.1:7000", candidate: true, priority: 100, follow: relay-a1}
    A-S-1:    {site: A, redis_addr: "127.0.0.1:7002", follow: relay-a1}`,
	}
	ef := addEtcdFlags(cmd.PersistentFlags())
	cmd.AddCommand(newTopologyApplyCmd(ef), newTopologyGetCmd(ef), newTopologyValidateCmd(ef))
	return cmd
}

func newTopologyApplyCmd(ef *etcdFlags) *cobra.Command {
	var file string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Make FILE the whole topology of the cluster, in one etcd transaction",
		Long: `Validate FILE and write it as the cluster's whole topology in one etcd
transaction: changed values are put, keys the file no longer has are
deleted, so every component sees the new topology at once, never half of it.
An invalid file is refused with each problem named, and nothing is written.`,
		Example: `  arbor topology apply -f deploy/topology.yaml --etcd 127.0.0.1:2379 --cluster seed`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			top, err := readTopologyFile(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if dryRun {
				fmt.Fprintf(cmd.OutOrStdout(), "valid: %s (not applied: --dry-run)\n", summary(top))
				return nil
			}
			cli, err := ef.client()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), topologyTimeout)
			defer cancel()
			rev, err := topology.Apply(ctx, cli, ef.cluster, top)
			if err != nil {
				return problemLines(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied to cluster %s at revision %d: %s\n", ef.cluster, rev, summary(top))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology YAML file ('-' for standard input) (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate only, write nothing")
	cmd.MarkFlagRequired("file")
	return cmd
}

func newTopologyGetCmd(ef *etcdFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "get",
		Short: "Print the cluster's topology from etcd as YAML",
		Long: `Print the cluster's topology from etcd as the YAML that apply reads. If the
topology in etcd is invalid (a refused edit), what could be read is printed
and the command fails naming each problem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cli, err := ef.client()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), topologyTimeout)
			defer cancel()
			top, rev, err := topology.Load(ctx, cli, ef.cluster)
			var verr *topology.ValidationError
			if err != nil && !errors.As(err, &verr) {
				return err
			}
			b, merr := topology.MarshalYAML(top)
			if merr != nil {
				return merr
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# cluster %s, etcd revision %d\n%s", ef.cluster, rev, b)
			return problemLines(err)
		},
	}
}

func newTopologyValidateCmd(ef *etcdFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate [-f FILE]",
		Short: "Check a topology file, or the topology in etcd, and name every problem",
		Long: `Check the topology in FILE (or, without -f, the one in etcd) against the rules
every component applies: values parse, no unknown fields, every reference
(site, relay, node, master) exists, relay upstreams form no cycle, all relays
descend from one master ("two roots" is refused), addresses are not shared.
Exits non-zero, naming each problem, if it is invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var top *topology.Topology
			var err error
			if file != "" {
				top, err = readTopologyFile(file, cmd.InOrStdin())
			} else {
				cli, cerr := ef.client()
				if cerr != nil {
					return cerr
				}
				defer cli.Close()
				ctx, cancel := context.WithTimeout(cmd.Context(), topologyTimeout)
				defer cancel()
				top, _, err = topology.Load(ctx, cli, ef.cluster)
				err = problemLines(err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "valid: %s\n", summary(top))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology YAML file ('-' for standard input); without it, the topology in etcd")
	return cmd
}

// readTopologyFile reads and validates a topology file ("-": stdin). A
// validation error names every problem, one per line.
func readTopologyFile(name string, stdin io.Reader) (*topology.Topology, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	top, err := topology.ParseYAML(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, problemLines(err))
	}
	return top, nil
}

// problemLines renders a *topology.ValidationError with one problem per
// line; other errors are returned as they are.
func problemLines(err error) error {
	var verr *topology.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid topology (%d problems):", len(verr.Problems))
	for _, p := range verr.Problems {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return &problemsError{msg: b.String(), err: verr}
}

// problemsError is a ValidationError printed one problem per line.
type problemsError struct {
	msg string
	err *topology.ValidationError
}

func (e *problemsError) Error() string { return e.msg }
func (e *problemsError) Unwrap() error { return e.err }

func summary(t *topology.Topology) string {
	master := t.Master
	if master == "" {
		master = "none"
	}
	return fmt.Sprintf("%d sites, %d relays, %d nodes, master %s", len(t.Sites), len(t.Relays), len(t.Nodes), master)
}
