// Command composecheck validates compose files the way docker compose loads
// them, offline: against the Compose Specification's JSON schema (which
// compose-go embeds), with interpolation, merge keys and depends_on checked.
// cmd/arbor's deploy test runs it on deploy/compose/compose.yaml, since no
// Docker engine or compose plugin runs here.
//
//	go -C tools run ./composecheck FILE...
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck FILE...")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(os.Args[1:], cli.WithOsEnv, cli.WithResolvedPaths(false))
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
	fmt.Printf("valid: project %s, %d services\n", p.Name, len(p.Services))
}
