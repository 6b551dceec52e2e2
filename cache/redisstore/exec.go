package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
)

// call is one script invocation; it is atomic on its own (all its keys are
// in one slot).
type call struct {
	script *redis.Script
	keys   []string
	args   []any
}

// scripts are loaded on every node at start and again when a node answers
// NOSCRIPT (a promoted replica that restarted, SCRIPT FLUSH).
var scripts = []*redis.Script{
	registersScript, writeScript, insertScript, markScript, fixBucketScript, claimScript,
	internScript, acquireScript, releaseScript, guardScript, saveRecomputeScript, auditScript,
}

func (s *Store) loadScripts(ctx context.Context) error {
	for _, sc := range scripts {
		if err := sc.Load(ctx, s.c).Err(); err != nil {
			return s.fail("load scripts", err)
		}
	}
	return nil
}

// run executes calls in one pipelined round trip per node and returns each
// call's reply, or the first failure. With Options.WaitReplicas, the calls
// of each node run on one connection followed by WAIT, and a node whose
// replicas did not confirm in time fails its calls (they ran on the
// primary and may not survive its failure).
func (s *Store) run(ctx context.Context, calls ...call) ([]any, error) {
	out, errs := s.runEach(ctx, calls...)
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// runEach is run with one error per call: a multi-part write needs to know
// which parts ran. A call whose node could not be reached has that error
// (it may or may not have run).
func (s *Store) runEach(ctx context.Context, calls ...call) ([]any, []error) {
	out := make([]any, len(calls))
	errs := make([]error, len(calls))
	pending := make([]int, len(calls))
	for i := range pending {
		pending[i] = i
	}
	loaded := false
	for attempt := 0; ; attempt++ {
		s.runNodes(ctx, calls, pending, out, errs)
		// Retry only calls that certainly did not run: the script was
		// unknown to the node, or the slot had moved.
		var again []int
		noscript, moved := false, false
		for _, i := range pending {
			switch e := errs[i]; {
			case e == nil:
			case redis.HasErrorPrefix(e, "NOSCRIPT"):
				noscript = true
				again = append(again, i)
			case redis.HasErrorPrefix(e, "MOVED") || redis.HasErrorPrefix(e, "ASK"):
				moved = true
				again = append(again, i)
			}
		}
		if len(again) == 0 || attempt >= 3 || ctx.Err() != nil {
			return out, errs
		}
		if noscript && !loaded {
			if err := s.loadScripts(ctx); err != nil {
				return out, errs
			}
			loaded = true
		}
		if moved && s.cluster != nil {
			s.cluster.ReloadState(ctx)
			time.Sleep(50 * time.Millisecond)
		}
		pending = again
	}
}

// isReply reports whether err is a Redis reply to one command (the
// others of the pipeline ran) rather than a failure of the exchange.
func isReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed)
}

// runNodes runs each node's calls in one pipeline, the nodes in parallel;
// with WaitReplicas, on one connection followed by WAIT. It does not use
// the cluster client's pipeline: when one node fails, that one retries and
// then marks every command of the pipeline failed, including those other
// nodes executed — and a multi-part write must know which parts ran.
func (s *Store) runNodes(ctx context.Context, calls []call, idx []int, out []any, errs []error) {
	type group struct {
		node *redis.Client
		idx  []int
	}
	var groups []*group
	byNode := map[*redis.Client]*group{}
	for _, i := range idx {
		node, err := s.nodeFor(ctx, calls[i].keys[0])
		if err != nil {
			errs[i] = err
			continue
		}
		g := byNode[node]
		if g == nil {
			g = &group{node: node}
			byNode[node] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	wait := s.opts.WaitReplicas > 0
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmds := make([]*redis.Cmd, len(g.idx))
			var waitCmd *redis.Cmd
			fill := func(p redis.Pipeliner) error {
				for k, i := range g.idx {
					c := calls[i]
					cmds[k] = c.script.EvalSha(ctx, p, c.keys, c.args...)
				}
				if wait {
					waitCmd = p.Do(ctx, "wait", s.opts.WaitReplicas, s.opts.WaitTimeout.Milliseconds())
				}
				return nil
			}
			if wait {
				// WAIT counts the writes of its own connection.
				conn := g.node.Conn()
				defer conn.Close()
				_, _ = conn.Pipelined(ctx, fill)
			} else {
				_, _ = g.node.Pipelined(ctx, fill)
			}
			var n int64
			var werr error
			if wait {
				n, werr = waitCmd.Int64()
			}
			for k, i := range g.idx {
				out[i], errs[i] = cmds[k].Result()
				if wait && errs[i] == nil && (werr != nil || n < int64(s.opts.WaitReplicas)) {
					errs[i] = fmt.Errorf("%w: %d of %d replicas confirmed the write within %s (%v)",
						cache.ErrUnavailable, n, s.opts.WaitReplicas, s.opts.WaitTimeout, werr)
				}
			}
		}()
	}
	wg.Wait()
}

// nodeFor is the client of the primary serving key.
func (s *Store) nodeFor(ctx context.Context, key string) (*redis.Client, error) {
	if s.cluster != nil {
		return s.cluster.MasterForKey(ctx, key)
	}
	if c, ok := s.c.(*redis.Client); ok {
		return c, nil
	}
	return nil, fmt.Errorf("redisstore: WAIT needs a single server, sentinel or cluster client")
}

// scriptStatus reads the {ok, info} replies of the scripts.
func scriptStatus(v any) (bool, string) {
	a, _ := v.([]any)
	if len(a) == 0 {
		return false, ""
	}
	n, _ := a[0].(int64)
	info := ""
	if len(a) > 1 {
		switch x := a[1].(type) {
		case string:
			info = x
		case int64:
			info = strconv.FormatInt(x, 10)
		}
	}
	return n == 1, info
}

// encodeEntry is the JSON stored for an audit entry (its id is the stream
// id, assigned when appended).
func encodeEntry(e audit.Entry, now time.Time) (string, error) {
	if e.Time.IsZero() {
		e.Time = now.UTC()
	}
	e.ID = ""
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("encode audit entry: %w", err)
	}
	return string(b), nil
}
