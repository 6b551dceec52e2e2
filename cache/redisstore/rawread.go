package redisstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// rawReader is the miss batcher's own connection to a single Redis server:
// the records of a batch of misses are read with a hand-written RESP2
// pipeline (HGET of each bucket field, GET of each overflow key) into
// reused buffers, without go-redis's per-command objects (command,
// arguments, reply) and per-pipeline work (pool checkout with a
// health-check system call, hooks, push-notification handling) — the
// part of a miss's client CPU that is not the round trip's two system
// calls, decoding or the local cache (README "Capacity and sizing").
//
// Only for redis://, rediss:// and unix:// stores (one server, whose
// address does not move): Sentinel and Cluster keep go-redis, which
// follows failovers and slots. The connection is dialled with go-redis's
// own dialer (TLS as configured, verified as go-redis verifies its own:
// TestRawReadOverTLS, TestStoreMissesOverTLS) and authenticated and switched to the
// URL's database as go-redis does. Any error, short read or timeout
// closes it (a reply left half-read must never be taken for the next
// one's) and the read fails: the decisions fail closed; the next read
// dials again.
type rawReader struct {
	opt *redis.Options

	mu   sync.Mutex // one read at a time (TryLock: a busy reader means go-redis)
	conn net.Conn
	in   countingReader // conn, counting the bytes received
	rd   *bufio.Reader
	buf  []byte // commands of the read being sent
	vals []string
}

// maxRawBulk is Redis's own bound on a value (proto-max-bulk-len's
// default): a longer length is a protocol error, not an allocation.
const maxRawBulk = 512 << 20

func newRawReader(c redis.UniversalClient, scheme string) *rawReader {
	switch scheme {
	case "redis", "rediss", "unix":
	default:
		return nil
	}
	cl, ok := c.(*redis.Client)
	if !ok {
		return nil
	}
	opt := cl.Options()
	if opt.Dialer == nil || opt.CredentialsProvider != nil || opt.CredentialsProviderContext != nil || opt.StreamingCredentialsProvider != nil {
		return nil // credentials that change: go-redis knows how
	}
	return &rawReader{opt: opt}
}

// errRawProtocol: Redis answered something a GET/HGET cannot answer.
var errRawProtocol = errors.New("redis: unexpected reply")

// close drops the connection (r.mu held).
func (r *rawReader) close() {
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn, r.rd = nil, nil
	}
}

// Close drops the connection at the store's end.
func (r *rawReader) Close() {
	r.mu.Lock()
	r.close()
	r.mu.Unlock()
}

// dial opens and prepares the connection (r.mu held).
func (r *rawReader) dial(ctx context.Context, deadline time.Time) error {
	conn, err := r.opt.Dialer(ctx, r.opt.Network, r.opt.Addr)
	if err != nil {
		return err
	}
	r.conn, r.in = conn, countingReader{r: conn}
	r.rd = bufio.NewReaderSize(&r.in, 16<<10)
	if err := conn.SetDeadline(deadline); err != nil {
		r.close()
		return err
	}
	var b []byte // not r.buf: it holds the commands waiting for this connection
	n := 0
	if r.opt.Password != "" || r.opt.Username != "" {
		if r.opt.Username != "" {
			b = appendCommand(b, "AUTH", r.opt.Username, r.opt.Password)
		} else {
			b = appendCommand(b, "AUTH", r.opt.Password)
		}
		n++
	}
	if r.opt.DB != 0 {
		b = appendCommand(b, "SELECT", strconv.Itoa(r.opt.DB))
		n++
	}
	if n == 0 {
		return nil
	}
	if _, err := conn.Write(b); err != nil {
		r.close()
		return err
	}
	for range n {
		line, err := r.line()
		if err == nil && (len(line) == 0 || line[0] != '+') {
			err = fmt.Errorf("redis: connection set-up refused: %w", replyError(line))
		}
		if err != nil {
			r.close()
			return err
		}
	}
	return nil
}

// do sends n commands (cmds, RESP: appendCommand, appendBulk) in one
// round trip and returns their bulk-string replies, "" for nil; the slice
// is valid until the next call. Only for commands that change nothing:
//
// A connection kept from an earlier read may have been closed by the
// server meanwhile (a restart, a timeout, CLIENT KILL): go-redis checks
// for that before each use at the cost of a system call; here a kept
// connection that fails before any reply byte arrived (and not by the
// deadline) is dialled again and the commands are sent once more.
func (r *rawReader) do(ctx context.Context, cmds []byte, n int) ([]string, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, errors.New("redis: raw read without a deadline")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kept := r.conn != nil
	vals, replied, err := r.roundTrip(ctx, deadline, cmds, n)
	if err != nil && kept && !replied && !isTimeout(err) && ctx.Err() == nil {
		vals, _, err = r.roundTrip(ctx, deadline, cmds, n)
	}
	return vals, err
}

// roundTrip sends cmds (n commands) and reads n bulk replies; replied
// says whether any reply byte arrived. Any error closes the connection.
func (r *rawReader) roundTrip(ctx context.Context, deadline time.Time, cmds []byte, n int) (vals []string, replied bool, err error) {
	if r.conn == nil {
		if err := r.dial(ctx, deadline); err != nil {
			return nil, false, err
		}
	} else if err := r.conn.SetDeadline(deadline); err != nil {
		r.close()
		return nil, false, err
	}
	r.in.n = 0
	if _, err := r.conn.Write(cmds); err != nil {
		r.close()
		return nil, false, err
	}
	vals = r.vals[:0]
	for range n {
		v, err := r.bulk()
		if err != nil {
			replied = r.in.n > 0
			r.close()
			return nil, replied, err
		}
		vals = append(vals, v)
	}
	r.vals = vals
	return vals, true, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// bulk reads one bulk-string reply ("" for nil).
func (r *rawReader) bulk() (string, error) {
	line, err := r.line()
	if err != nil {
		return "", err
	}
	if len(line) == 0 || line[0] != '$' {
		if len(line) > 0 && line[0] == '-' {
			return "", replyError(line)
		}
		return "", errRawProtocol
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n < -1 || n > maxRawBulk {
		return "", errRawProtocol
	}
	if n == -1 {
		return "", nil
	}
	if n+2 <= r.rd.Size() {
		// The usual case: the value is copied once, from the read buffer
		// into its string.
		p, err := r.rd.Peek(n + 2)
		if err != nil {
			return "", err
		}
		if p[n] != '\r' || p[n+1] != '\n' {
			return "", errRawProtocol
		}
		v := string(p[:n])
		_, _ = r.rd.Discard(n + 2)
		return v, nil
	}
	// Longer: grown as the bytes arrive, so that a garbled length costs
	// no allocation beyond what the server really sent.
	v := make([]byte, 0, r.rd.Size())
	for len(v) < n+2 {
		if len(v) == cap(v) {
			v = slices.Grow(v, min(n+2-len(v), len(v)))
		}
		m, err := r.rd.Read(v[len(v):min(cap(v), n+2)])
		v = v[:len(v)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	if v[n] != '\r' || v[n+1] != '\n' {
		return "", errRawProtocol
	}
	return unsafe.String(&v[0], n), nil // v is not written again
}

// line reads one reply line without its CRLF (valid until the next read).
func (r *rawReader) line() ([]byte, error) {
	line, err := r.rd.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errRawProtocol
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errRawProtocol
	}
	return line[:len(line)-2], nil
}

// rawError is an error reply, kept to its first word (the error code:
// LOADING, WRONGTYPE, NOAUTH…): the rest may echo a command's arguments,
// and a member holds a subject id. It is a redis.Error, so the store
// classifies it as it does go-redis's (transient or not).
type rawError string

func (e rawError) Error() string { return string(e) }
func (rawError) RedisError()     {}

var _ redis.Error = rawError("")

func replyError(line []byte) rawError {
	if len(line) > 0 && line[0] == '-' {
		line = line[1:]
	}
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		line = line[:i]
	}
	if len(line) > 40 {
		line = line[:40]
	}
	if len(line) == 0 {
		return "ERR"
	}
	return rawError(line)
}

// appendArray appends the header of a RESP2 command of n arguments (each
// then appended by appendBulk).
func appendArray(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

// appendBulk appends one argument made of parts, concatenated (a key
// built without a string of its own).
func appendBulk(b []byte, parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, '\r', '\n')
	for _, p := range parts {
		b = append(b, p...)
	}
	return append(b, '\r', '\n')
}

// appendCommand appends a RESP2 command (an array of bulk strings).
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}
