package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/cmdline"
)

// forgetCommands are `admin deletions …` and `admin due`: the lifecycle
// executor's held deletions and the due report.
func forgetCommands(c *client) []*cobra.Command {
	var state, kind string
	var limit int
	var asJSON bool
	list := &cobra.Command{
		Use:   "deletions",
		Short: "list deletion work (held for approval by default); approve or reject it",
		Long: `deletions lists deletion work: lifecycle erasures and wipes waiting for an
approval (--state held, the default), or the records of another state.
"deletions approve ID…" and "deletions reject ID…" decide held ones (--all:
every held deletion; --dry-run: show what would be decided and the backend
calls it would make, decide nothing). Approvals pass the mass-deletion guard;
beyond it they need --confirm. A lifecycle deletion whose data is no longer
obliviated is not approved (not_due): reject it.`,
		Example: `  gdprgate admin deletions
  gdprgate admin deletions --state not_executable
  gdprgate admin deletions approve lc-3f…-1-w
  gdprgate admin deletions approve --all --dry-run
  gdprgate admin deletions approve --all --confirm`,
		Args: cmdline.Args(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if state != "" {
				q.Set("state", state)
			}
			if kind != "" {
				q.Set("kind", kind)
			}
			return c.listDeletions(cmd.Context(), "/v1/deletions?"+q.Encode(), asJSON)
		},
	}
	f := list.Flags()
	cmdline.EnumVar(f, &state, "state", []string{"held", "queued", "running", "done", "failed", "rejected", "not_executable", "suspended", "cancelled"}, "records of this state")
	state = "held"
	cmdline.EnumVar(f, &kind, "kind", []string{"wipe", "erasure", "purge"}, "only this kind")
	f.IntVar(&limit, "limit", 100, "at most this many")
	f.BoolVar(&asJSON, "json", false, "print the API's JSON answer")

	for _, approve := range []bool{true, false} {
		verb := "reject"
		if approve {
			verb = "approve"
		}
		var all, confirm, dry bool
		sub := &cobra.Command{
			Use:   verb + " [ID…]",
			Short: verb + " held deletions (and the wipes cascaded with them)",
			Args:  cmdline.Args(0, 10000, "[ID…]"),
			RunE: func(cmd *cobra.Command, args []string) error {
				if all == (len(args) > 0) {
					return cmdline.Usagef("name held deletions or give --all, not both")
				}
				body, _ := json.Marshal(map[string]any{"ids": args, "all": all, "confirm": confirm})
				path := "/v1/deletions:" + verb
				if dry {
					path += "?dry_run=true"
				}
				b, err := c.do(cmd.Context(), "POST", path, "application/json", bytes.NewReader(body))
				if err != nil {
					return err
				}
				var ans struct {
					Decisions []struct {
						ID, Status, Error string
					} `json:"decisions"`
					Decided   int `json:"decided"`
					Deletions []struct {
						ID    string           `json:"id"`
						Steps []cache.WipeStep `json:"steps"`
					} `json:"deletions"`
					Guard struct {
						Asked     int `json:"asked"`
						PerMinute int `json:"per_minute"`
					} `json:"guard"`
				}
				if err := json.Unmarshal(b, &ans); err != nil {
					return fmt.Errorf("read answer: %w", err)
				}
				for _, d := range ans.Decisions {
					line := d.ID + "\t" + d.Status
					if d.Error != "" {
						line += "\t" + d.Error
					}
					fmt.Fprintln(c.out, line)
				}
				if dry {
					for _, d := range ans.Deletions {
						for _, st := range d.Steps {
							fmt.Fprintf(c.out, "%s\t%s %s\n", d.ID, st.Method, st.Path)
						}
					}
					if approve {
						fmt.Fprintf(c.out, "the mass-deletion guard would count %d (limit %d a minute across every sidecar)\n", ans.Guard.Asked, ans.Guard.PerMinute)
					}
					fmt.Fprintln(c.out, "dry run: nothing decided")
					return nil
				}
				fmt.Fprintf(c.out, "%d deletions %s\n", ans.Decided, map[bool]string{true: "approved", false: "rejected"}[approve])
				return nil
			},
		}
		sub.Flags().BoolVar(&all, "all", false, "every held deletion")
		sub.Flags().BoolVar(&dry, "dry-run", false, "show what would be decided and the backend calls; decide nothing")
		cmdline.NoEnv(sub.Flags(), "dry-run")
		if approve {
			sub.Flags().BoolVar(&confirm, "confirm", false, "pass the mass-deletion guard")
			cmdline.NoEnv(sub.Flags(), "confirm")
		}
		cmdline.NoEnv(sub.Flags(), "all")
		list.AddCommand(sub)
	}

	var within string
	var dueLimit int
	var dueJSON bool
	due := &cobra.Command{
		Use:   "due",
		Short: "the due report: subjects with a lifecycle transition within --within (default 7d)",
		Long: `due lists the subjects whose data changes state (archived, expired,
obliviated) or whose evidence reaches the end of its retention within
--within, with the sensitivity, the instant and, for obliviation, whether a
deletion step is configured ("not executable" otherwise). Subjects are shown
in clear: the token needs the export_evidence scope.`,
		Example: `  gdprgate admin due --within 7d`,
		Args:    cmdline.Args(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"within": {within}, "limit": {strconv.Itoa(dueLimit)}}
			return c.dueReport(cmd.Context(), "/v1/reports/due?"+q.Encode(), dueJSON)
		},
	}
	due.Flags().StringVar(&within, "within", "7d", "the window: days (7d) or a duration (36h)")
	due.Flags().IntVar(&dueLimit, "limit", 1000, "subjects read from the due index")
	due.Flags().BoolVar(&dueJSON, "json", false, "print the API's JSON answer")
	return []*cobra.Command{list, due}
}

func (c *client) listDeletions(ctx context.Context, path string, asJSON bool) error {
	b, err := c.do(ctx, "GET", path, "", nil)
	if err != nil {
		return err
	}
	if asJSON {
		_, err := c.out.Write(b)
		return err
	}
	var ans struct {
		Deletions []struct {
			ID            string   `json:"id"`
			Kind          string   `json:"kind"`
			Status        string   `json:"status"`
			Reason        string   `json:"reason"`
			HeldFor       string   `json:"held_for"`
			Sensitivities []string `json:"sensitivities"`
			Steps         []any    `json:"steps"`
			Subject       struct{ Entity, ID string }
			CreatedAt     time.Time `json:"created_at"`
		} `json:"deletions"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATUS\tSUBJECT\tWHAT\tSTEPS\tCREATED")
	for _, d := range ans.Deletions {
		kind := d.Kind
		if kind == "" {
			kind = "wipe"
		}
		what := strings.Join(d.Sensitivities, ",")
		if what == "" {
			what = "everything"
		}
		status := d.Status
		if d.HeldFor != "" {
			status += " (" + d.HeldFor + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%d\t%s\n", d.ID, kind, status, d.Subject.Entity, d.Subject.ID, what, len(d.Steps), d.CreatedAt.Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%d deletions\n", len(ans.Deletions))
	return nil
}

func (c *client) dueReport(ctx context.Context, path string, asJSON bool) error {
	b, err := c.do(ctx, "GET", path, "", nil)
	if err != nil {
		return err
	}
	if asJSON {
		_, err := c.out.Write(b)
		return err
	}
	var ans struct {
		Until     time.Time `json:"until"`
		Truncated bool      `json:"truncated"`
		Subjects  []struct {
			Subject     struct{ Entity, ID string }
			Transitions []struct {
				At          time.Time `json:"at"`
				Sensitivity string    `json:"sensitivity"`
				From, To    string
				Executable  *bool `json:"executable"`
				Pending     bool  `json:"pending"`
			} `json:"transitions"`
			Evidence []struct {
				At             time.Time `json:"at"`
				EvidenceID     string    `json:"evidence_id"`
				LegalisationID string    `json:"legalisation_id"`
			} `json:"evidence_purges"`
		} `json:"subjects"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tSUBJECT\tWHAT\tCHANGE\tNOTE")
	for _, s := range ans.Subjects {
		who := s.Subject.Entity + "/" + s.Subject.ID
		for _, tr := range s.Transitions {
			change, note := tr.From+" → "+tr.To, ""
			if tr.Pending {
				change, note = "obliviated", "deletion pending"
			}
			if tr.Executable != nil && !*tr.Executable {
				note = strings.TrimPrefix(note+", not executable", ", ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", tr.At.Format(time.RFC3339), who, tr.Sensitivity, change, note)
		}
		for _, ev := range s.Evidence {
			fmt.Fprintf(tw, "%s\t%s\tevidence %s\tpurged\t%s\n", ev.At.Format(time.RFC3339), who, ev.EvidenceID, ev.LegalisationID)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%d subjects with transitions until %s", len(ans.Subjects), ans.Until.Format(time.RFC3339))
	if ans.Truncated {
		fmt.Fprint(c.out, " (truncated: raise --limit)")
	}
	fmt.Fprintln(c.out)
	return nil
}
