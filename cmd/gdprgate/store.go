package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/internal/cmdline"
)

func init() { register("store", storeMigrateCmd) }

func storeMigrateCmd() *cobra.Command {
	var (
		from, to  string
		buckets   int
		deleteOld bool
		quiet     bool
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "copy a Redis store into the sharded key layout (layout 1 in place, or into another Redis)",
		Long: `migrate converts a store written by a gdprgate before sharding (key layout 1,
every key under {g}) into key layout 2, in place (--to-url omitted) or into
another Redis or Redis Cluster; or copies a layout 2 store into another, empty
Redis with another bucket count (--buckets). Stop the sidecars first (writes
made meanwhile are not carried over). It can be run again after an
interruption. It prints a JSON report and leaves an audit entry store.migrate.`,
		Example: `  gdprgate store migrate --from-url redis://old:6379 --delete-old
  gdprgate store migrate --from-url redis://old:6379 --to-url redis-cluster://n1:7000,n2:7000,n3:7000`,
		Args: cmdline.Args(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				return cmdline.Usagef("--from-url is required")
			}
			if to == "" {
				to = from
			}
			if deleteOld && to != from {
				return cmdline.Usagef("--delete-old applies to an in-place migration only (the source is left as it was)")
			}
			if buckets < 0 {
				return cmdline.Usagef("--buckets must be positive")
			}
			o := redisstore.MigrateOptions{Buckets: buckets, DeleteOld: deleteOld}
			if !quiet {
				o.Progress = func(n int) { fmt.Fprintf(cmd.ErrOrStderr(), "\r%d subjects", n) }
			}
			rep, err := redisstore.Migrate(cmd.Context(), from, to, o)
			if !quiet {
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			if rep != nil {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				_ = enc.Encode(rep)
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&from, "from-url", "", "the Redis to read (any URL --redis-url accepts)")
	fs.StringVar(&to, "to-url", "", "the Redis to write (default: the source, in place)")
	fs.IntVar(&buckets, "buckets", 0, "subject buckets per shard tag of a new layout (default 512, about ten million subjects; the source's when it has layout 2)")
	fs.BoolVar(&deleteOld, "delete-old", false, "in place: delete the layout 1 keys once everything is copied")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	cmdline.NoEnv(fs, "delete-old")
	return cmd
}
