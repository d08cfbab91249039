package main

import (
	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var o demo.Options
	var logLevel string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the three-site seed topology on this machine, with a write load",
		Long: `Run the seed topology of the design on this machine: site A with the master,
two relays (relay-a1, relay-a2), a backup and two read replicas; sites B and C
with a relay each and their backups and read replicas, all real redis-server
processes on loopback. A write load runs on the master while a table shows
every server's offset and lag; at the end every server's DEBUG DIGEST is
checked against the master's. Needs redis-server (apt-get install redis-server).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, "text")
			if err != nil {
				return err
			}
			o.Logger = logger
			o.Out = cmd.OutOrStdout()
			return demo.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", 10_000_000_000, "how long the write load runs (0: until Ctrl-C)")
	f.IntVar(&o.Rate, "rate", 2000, "write load in commands per second")
	f.StringVar(&o.Dir, "dir", "", "directory for the servers' files (default: a temporary one)")
	f.BoolVar(&o.Keep, "keep", false, "keep the temporary directory")
	f.StringVar(&o.RedisServer, "redis-server", "redis-server", "redis-server binary")
	f.StringVar(&logLevel, "log-level", "warn", "relay log level")
	return cmd
}
