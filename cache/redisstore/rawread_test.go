package redisstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/internal/testredis"
)

func rawFor(t *testing.T, url string) *rawReader {
	t.Helper()
	c, err := newClient(url, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	scheme, _, _ := strings.Cut(url, "://")
	r := newRawReader(c, scheme)
	if r == nil {
		t.Fatalf("no raw reader for %s", url)
	}
	t.Cleanup(r.Close)
	return r
}

// readRecords reads, for each i, HGET bkey[i] field[i] and, when okey[i]
// is not empty, GET okey[i], through r.
func (r *rawReader) readRecords(ctx context.Context, bkey, field, okey []string) (in, ov []string, err error) {
	var b []byte
	n := 0
	for i := range bkey {
		b = appendCommand(b, "HGET", bkey[i], field[i])
		n++
		if okey[i] != "" {
			b = appendCommand(b, "GET", okey[i])
			n++
		}
	}
	vals, err := r.do(ctx, b, n)
	if err != nil {
		return nil, nil, err
	}
	in, ov = make([]string, len(bkey)), make([]string, len(bkey))
	j := 0
	for i := range bkey {
		in[i] = vals[j]
		j++
		if okey[i] != "" {
			ov[i] = vals[j]
			j++
		}
	}
	return in, ov, nil
}

func rawCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRawReadsAsGoRedisDoes: the batcher's own connection authenticates,
// selects the URL's database and reads bucket fields and overflow keys —
// present, missing and binary — as go-redis reads them.
func TestRawReadsAsGoRedisDoes(t *testing.T) {
	srv := testredis.Start(t)
	ctx := rawCtx(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.ConfigSet(ctx, "requirepass", "s3cret pass").Err(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "s3cret pass"})
		_ = c.ConfigSet(context.Background(), "requirepass", "").Err()
		_ = c.Close()
	}()
	w := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "s3cret pass", DB: 3})
	defer w.Close()
	bin := "\x00\x01\r\n$-1\r\n\xff"
	if err := w.HSet(ctx, "b:1", "m1", "inline-1", "m2", bin).Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Set(ctx, "o:m2", strings.Repeat("x", 70000), 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := rawFor(t, "redis://:s3cret%20pass@"+srv.Addr()+"/3")
	for round := range 2 { // dialled, then kept
		in, ov, err := r.readRecords(ctx, []string{"b:1", "b:1", "b:2"}, []string{"m1", "m2", "m1"}, []string{"o:m1", "o:m2", ""})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if want := []string{"inline-1", bin, ""}; !equal(in, want) {
			t.Errorf("round %d: inline = %q, want %q", round, in, want)
		}
		if want := []string{"", strings.Repeat("x", 70000), ""}; !equal(ov, want) {
			t.Errorf("round %d: overflow lengths = %d %d %d, want 0 70000 0", round, len(ov[0]), len(ov[1]), len(ov[2]))
		}
	}
	bad := rawFor(t, "redis://:wrong@"+srv.Addr()+"/3")
	if _, _, err := bad.readRecords(ctx, []string{"b:1"}, []string{"m1"}, []string{""}); err == nil {
		t.Fatal("read with a wrong password succeeded")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRawReadRedialsAKilledConnection: a kept connection the server closed
// meanwhile (CLIENT KILL, a restart) costs no failed read: it is dialled
// again and the reads are sent once more.
func TestRawReadRedialsAKilledConnection(t *testing.T) {
	srv := testredis.Start(t)
	ctx := rawCtx(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.HSet(ctx, "b:1", "m1", "v").Err(); err != nil {
		t.Fatal(err)
	}
	r := rawFor(t, srv.URL())
	for round := range 3 {
		in, _, err := r.readRecords(ctx, []string{"b:1"}, []string{"m1"}, []string{"o:m1"})
		if err != nil || in[0] != "v" {
			t.Fatalf("round %d: %q, %v", round, in, err)
		}
		if err := admin.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeRedis answers every connection with reply once it has read one
// command line.
func fakeRedis(t *testing.T, reply string, hang bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					return
				}
				_, _ = c.Write([]byte(reply))
				if hang {
					time.Sleep(5 * time.Second)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRawReadRefusesWhatIsNotAnAnswer: error replies, replies of another
// type, malformed or truncated ones and a server that stops answering are
// errors (the decisions fail closed), the connection is dropped, and an
// error reply is kept to its code: the rest may echo a subject's member.
func TestRawReadRefusesWhatIsNotAnAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, reply string
		hang        bool
		isRedis     bool
	}{
		{"error reply", "-ERR unknown command, with args beginning with: 'c-5'\r\n", false, true},
		{"loading", "-LOADING Redis is loading the dataset in memory\r\n", false, true},
		{"integer", ":1\r\n", false, false},
		{"array", "*1\r\n$1\r\nx\r\n", false, false},
		{"bad length", "$abc\r\n", false, false},
		{"negative length", "$-2\r\n", false, false},
		{"huge length", "$999999999999\r\n", false, false},
		{"longer than Redis allows", "$536870913\r\n", false, false},
		{"no CRLF after the value", "$1\r\nxyz\r\n", false, false},
		{"bare LF", "$1\nx\r\n", false, false},
		{"truncated value", "$10\r\nabc", false, false},
		{"closed before the reply", "", false, false},
		{"stops answering", "$1\r\nx\r\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeRedis(t, tc.reply, tc.hang)
			r := rawFor(t, "redis://"+addr)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			_, _, err := r.readRecords(ctx, []string{"b:1", "b:2"}, []string{"\x01c-5", "\x01c-6"}, []string{"", ""})
			if err == nil {
				t.Fatal("read succeeded")
			}
			if strings.Contains(err.Error(), "c-5") {
				t.Errorf("error %q quotes the member", err)
			}
			var rerr redis.Error
			if errors.As(err, &rerr) != tc.isRedis {
				t.Errorf("error %v (%T): redis.Error = %v, want %v", err, err, !tc.isRedis, tc.isRedis)
			}
			if r.conn != nil {
				t.Error("connection kept after an error")
			}
		})
	}
}

// TestRawReaderOnlyForOneServer: Sentinel and Cluster stores read their
// misses through go-redis, which follows failovers and slots.
func TestRawReaderOnlyForOneServer(t *testing.T) {
	for _, url := range []string{"redis-cluster://127.0.0.1:1,127.0.0.1:2", "redis-sentinel://127.0.0.1:1/mymaster"} {
		c, err := newClient(url, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		scheme, _, _ := strings.Cut(url, "://")
		if r := newRawReader(c, scheme); r != nil {
			t.Errorf("%s: raw reader", url)
		}
		_ = c.Close()
	}
}

// FuzzRawBulkReplies: whatever bytes a server sends, the raw reader's
// bulk replies are exactly what a plain reading of RESP2 finds — values
// (binary, empty, nil) byte for byte, or an error where the bytes are not
// a bulk reply — whether a value fits the read buffer or not.
func FuzzRawBulkReplies(f *testing.F) {
	for _, s := range []string{
		"$3\r\nabc\r\n$-1\r\n", "$0\r\n\r\n", "$5\r\na\r\nbc\r\n", "-ERR x\r\n", ":1\r\n", "$2\r\nabc\r\n",
		"$20\r\n01234567890123456789\r\n$-1\r\n", "$-2\r\n", "$1\nx\r\n", "$+1\r\nx\r\n", "$01\r\nx\r\n",
	} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		want, wantErr := referenceBulks(data, int(n%8))
		for _, size := range []int{16, 16 << 10} {
			r := &rawReader{}
			r.in = countingReader{r: bytes.NewReader(data)}
			r.rd = bufio.NewReaderSize(&r.in, size)
			var got []string
			var err error
			for range int(n % 8) {
				var v string
				if v, err = r.bulk(); err != nil {
					break
				}
				got = append(got, v)
			}
			if (err != nil) != wantErr {
				t.Fatalf("buffer %d: %q: err = %v, reference err = %v", size, data, err, wantErr)
			}
			if err == nil && !equal(got, want) {
				t.Fatalf("buffer %d: %q: %q, reference %q", size, data, got, want)
			}
		}
	})
}

// referenceBulks reads n RESP2 bulk replies ("" for nil) the plain way.
func referenceBulks(data []byte, n int) ([]string, bool) {
	var out []string
	for range n {
		i := bytes.Index(data, []byte("\r\n"))
		if i < 0 || bytes.IndexByte(data[:i], '\n') >= 0 || len(data) == 0 || data[0] != '$' {
			return nil, true
		}
		l, err := strconv.Atoi(string(data[1:i]))
		if err != nil || l < -1 || l > maxRawBulk {
			return nil, true
		}
		data = data[i+2:]
		if l == -1 {
			out = append(out, "")
			continue
		}
		if len(data) < l+2 || data[l] != '\r' || data[l+1] != '\n' {
			return nil, true
		}
		out = append(out, string(data[:l]))
		data = data[l+2:]
	}
	return out, false
}
