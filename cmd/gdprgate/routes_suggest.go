package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/onboard"
)

func init() { register("routes", routesSuggestCmd) }

func routesSuggestCmd() *cobra.Command {
	var openapi, out, entity string
	var sens []string
	cmd := &cobra.Command{
		Use:   "suggest --openapi FILE",
		Short: "draft a route map from the backend's OpenAPI 3 or Swagger 2 document",
		Long: `suggest reads the backend's OpenAPI 3 or Swagger 2 document (YAML or JSON) and
writes a draft route map: each route's kind (read, list, export, write,
outbound) from its method and schemas, where its data subject is (a path
parameter, an id in the answer or the request body, each list item's id), and
for each property a proposed sensitivity by its name and format — e-mail,
phone, names, address, birth date, sex, income, IBAN, IP address, health… —
with the reason and a confidence. Properties no rule classifies are listed for
a person to decide. The draft is a valid --config; review it before use.`,
		Example: `  gdprgate routes suggest --openapi crm.yaml > routes.yaml
  gdprgate routes suggest --openapi crm.json --entity contact --sensitivity special=art9 --out routes.yaml`,
		Args: cmdline.Args(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if openapi == "" {
				return cmdline.Usagef("--openapi is required: the backend's OpenAPI 3 or Swagger 2 document")
			}
			o := onboard.Options{Source: filepath.Base(openapi), Entity: entity, Sensitivities: map[onboard.Class]string{}}
			for c, id := range onboard.DefaultSensitivities {
				o.Sensitivities[c] = id
			}
			for _, kv := range sens {
				k, v, ok := strings.Cut(kv, "=")
				c := onboard.Class(strings.TrimSpace(k))
				if _, known := onboard.DefaultSensitivities[c]; !ok || !known || strings.TrimSpace(v) == "" {
					return cmdline.Usagef("--sensitivity %q: want CLASS=ID with CLASS one of auxiliary, contact, significant, special", kv)
				}
				o.Sensitivities[c] = strings.TrimSpace(v)
			}
			data, err := os.ReadFile(openapi)
			if err != nil {
				return err
			}
			d, err := onboard.Suggest(cmd.Context(), data, o)
			if err != nil {
				return fmt.Errorf("%s: %w", openapi, err)
			}
			text := d.YAML(o.Sensitivities)
			// The draft must load as a route map; if it does not, that is
			// this command's bug, said before anyone uses the file.
			if _, err := config.Parse(text); err != nil {
				return fmt.Errorf("the draft does not load as a route map (please report): %w", err)
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(text)
				return err
			}
			if err := os.WriteFile(out, text, 0o644); err != nil {
				return err
			}
			fields, unclassified := 0, 0
			for _, r := range d.Routes {
				fields += len(r.Fields)
				unclassified += len(r.Unclassified)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d routes, %d fields proposed, %d properties left to you\n", out, len(d.Routes), fields, unclassified)
			return nil
		},
	}
	f := cmd.Flags()
	cmdline.FileVar(f, &openapi, "openapi", "the backend's OpenAPI 3 or Swagger 2 document (YAML or JSON)")
	f.StringVarP(&out, "out", "o", "", "write the draft to this file (default: standard output)")
	f.StringVar(&entity, "entity", "", "the entity of every person subject, as your evidence names it (default: from the API's names)")
	f.StringSliceVar(&sens, "sensitivity", nil, "CLASS=ID: the sensitivity id for a class (auxiliary, contact, significant, special); repeatable")
	return cmd
}
