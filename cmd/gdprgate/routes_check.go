package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/onboard"
)

func init() { register("routes", routesCheckCmd) }

func routesCheckCmd() *cobra.Command {
	var cfgFile, sample, route string
	cmd := &cobra.Command{
		Use:   "check --config FILE --sample BODY.json [--route NAME]",
		Short: "show which mapped paths select a value in a sample answer of the backend",
		Long: `check reads a sample answer of the backend (one JSON document) the way
gdprgate reads answers, and prints for each route — or only --route — every
mapped field path and response subject path, and whether it selects a value
in the sample. A path that selects nothing redacts nothing in such an answer:
a typo, a renamed field, a list where the route expects a record. It exits
non-zero when something is wrong: with --route, any path that selects nothing;
without, a route the sample matches only in part, or no route at all.`,
		Example: `  curl -s http://crm:8081/api/contacts/c-1 > contact.json
  gdprgate routes check --config gdprgate.yaml --sample contact.json --route contact`,
		Args: cmdline.Args(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfgFile == "" || sample == "" {
				return cmdline.Usagef("--config and --sample are required")
			}
			cfg, err := config.Load(cfgFile)
			if err != nil {
				return err
			}
			body, err := os.ReadFile(sample)
			if err != nil {
				return err
			}
			rep, err := onboard.Check(cfg, body, route)
			if errors.Is(err, onboard.ErrNoRoute) {
				return cmdline.Usagef("--route: %v", err)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", sample, err)
			}
			if err := rep.Write(cmd.OutOrStdout()); err != nil {
				return err
			}
			if failed := rep.Failed(); len(failed) > 0 {
				return errors.New(strings.Join(failed, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	cmdline.FileVar(f, &cfgFile, "config", "the configuration file with the route map")
	cmdline.FileVar(f, &sample, "sample", "a sample answer of the backend (one JSON document)")
	f.StringVar(&route, "route", "", "check only the route of this name (default: every route with response paths)")
	return cmd
}
