package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/adminapi"
	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
)

// DemoToken is the admin token the demo configures (scope admin). It is
// printed, so it is only for the demo.
const DemoToken = "demo-admin-token"

func init() { register("", demoCmd) }

func demoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "run the example CRM behind the proxy with an in-memory store",
		Long: `demo starts the example CRM (no GDPR logic at all), gdprgate proxy in front of
it and the admin API, with the reference scenario's registers and evidence, and
prints commands to try. It brings its own configuration.`,
		Args: cmdline.Args(0, 0, ""),
	}
	sf := newServerFlags(cmd, "listen", "admin-addr", "redis-url", "log-level")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return runDemo(cmd.Context(), sf, cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	return cmd
}

func runDemo(ctx context.Context, sf *serverFlags, stdout, stderr io.Writer) error {
	cfg, err := config.Parse(crm.GatewayConfigYAML)
	if err != nil {
		return fmt.Errorf("embedded example config: %w", err)
	}
	cfg.Listen, cfg.AdminAddr, cfg.RedisURL = config.Default().Listen, config.Default().AdminAddr, ""
	if !sf.set("log-level") {
		cfg.LogLevel = "warn" // keep the walk-through readable
	}
	sf.apply(cfg)
	cfg.Admin.Tokens = append(cfg.Admin.Tokens, config.AdminToken{Name: "demo", SHA256: adminapi.HashToken(DemoToken), Scopes: []string{"admin"}})
	cfg.Admin.Console = true // the demo is where an operator first looks around
	if err := cfg.Validate(); err != nil {
		return err
	}

	now := time.Now().UTC().Truncate(time.Second)
	backend := crm.New(now)
	clis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("crm listener: %w", err)
	}
	cfg.Upstream = "http://" + clis.Addr().String()
	cfg.Wipes.Backend = cfg.Upstream
	go func() { _ = app.Serve(ctx, clis, backend, cfg.Listeners.HTTPLimits) }()

	log := newLogger(cfg, stderr)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	a, err := app.New(ctx, cfg, app.Options{Logger: log, SeedData: crm.RegistersYAML, SeedTime: now, HashKey: key})
	if err != nil {
		return err
	}
	defer a.Close()
	plis, err := listen(cfg.Listen, "proxy")
	if err != nil {
		return err
	}
	alis, err := listen(cfg.AdminAddr, "admin")
	if err != nil {
		return err
	}
	held := heldWipeOf(ctx, a, model.SubjectRef{Entity: "contact", ID: "c-5"})
	printWalkthrough(stdout, "http://"+plis.Addr().String(), "http://"+alis.Addr().String(), cfg.Upstream, held)
	return runProxyListeners(ctx, a, cfg, plis, alis)
}

// heldWipeOf waits (briefly) for the sweeper's first pass to hold the
// lifecycle wipe of ref, and returns its id ("" if none came).
func heldWipeOf(ctx context.Context, a *app.App, ref model.SubjectRef) string {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if held, err := a.Store.HeldWipes(ctx, 0); err == nil {
			for _, h := range held {
				if h.Subject == ref && h.Kind == cache.KindWipe {
					return h.ID
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ""
}

func printWalkthrough(w io.Writer, gw, admin, backend, held string) {
	fmt.Fprintf(w, `gdprgate demo is running.

  gateway (the CRM behind gdprgate): %[1]s
  admin API:                         %[2]s   (token: %[4]s)
  admin console:                     %[2]s/ui/   (sign in with the token %[4]s)
  the unprotected CRM:               %[3]s

Try it (Ctrl-C stops everything):

  # an agent sees Alice's contact data but not her health notes
  curl -s -H 'x-gdpr-roles: agent' %[1]s/api/contacts/c-1

  # Bob's data is archived: the agent gets nulls, a supervisor in archive mode sees it
  curl -s -H 'x-gdpr-roles: agent' %[1]s/api/contacts/c-2
  curl -s -H 'x-gdpr-roles: supervisor' -H 'x-gdpr-mode: archive' %[1]s/api/contacts/c-2

  # the auditor also sees expired data (Carol's marketing consent has lapsed)
  curl -s -H 'x-gdpr-roles: agent' %[1]s/api/contacts/c-3
  curl -s -H 'x-gdpr-roles: auditor' %[1]s/api/contacts/c-3

  # Eve's data is obliviated: 404. Dan has no consent for a campaign call: 403
  curl -s -i -H 'x-gdpr-roles: agent' %[1]s/api/contacts/c-5
  curl -s -i -H 'x-gdpr-roles: marketer' -H 'content-type: application/json' -d '{"contact_id":"c-4","type":"campaign"}' %[1]s/api/outbound/calls

  # an agent logs Dan's customer-care call: the rules table gives it its
  # sensitivity and gdprgate records contract-care evidence for Dan
  curl -s -i -H 'x-gdpr-roles: agent' -H 'content-type: application/json' -d '{"contact_id":"c-4","direction":"inbound","topic":"care"}' %[1]s/api/calls
  curl -s -H 'authorization: Bearer %[4]s' -H 'content-type: application/json' -d '{"channel":"InboundCall","topic_id":"care"}' %[2]s/v1/rules:evaluate

  # what gdprgate knows about Bob
  curl -s -H 'authorization: Bearer %[4]s' %[2]s/v1/subjects/contact/c-2

  # wipe Grace (c-7) and everything related; she is gone at once
  curl -s -H 'authorization: Bearer %[4]s' -d '{"entity":"contact","id":"c-7"}' %[2]s/v1/wipes
  curl -s -i -H 'x-gdpr-roles: supervisor' %[1]s/api/contacts/c-7

  # forgetting happens on time, on purpose: the lifecycle obliviated Eve, so the
  # sweeper created the wipe of her record, held for an approval (reads never
  # delete); health notes and other forgotten fields wait as erasures
  curl -s -H 'authorization: Bearer %[4]s' '%[2]s/v1/deletions?state=held'
  curl -s -H 'authorization: Bearer %[4]s' '%[2]s/v1/reports/due?within=30d'
`, gw, admin, backend, DemoToken)
	if held != "" {
		fmt.Fprintf(w, `
  # preview Eve's wipe (decides nothing): the CRM calls it would make and what
  # the mass-deletion guard would count
  curl -s -X POST -H 'authorization: Bearer %[3]s' '%[2]s/v1/deletions/%[1]s/approve?dry_run=true'

  # approve it ("confirm" passes the guard; audited as deletion.approve): the
  # CRM's DELETEs follow, then the CRM has no c-5
  curl -s -H 'authorization: Bearer %[3]s' -d '{"confirm":true}' %[2]s/v1/deletions/%[1]s/approve
  curl -s -H 'authorization: Bearer %[3]s' '%[2]s/v1/deletions/%[1]s'
  curl -s -i %[4]s/api/contacts/c-5
`, held, admin, DemoToken, backend)
	}
}
