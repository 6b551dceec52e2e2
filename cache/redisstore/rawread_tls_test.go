package redisstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// tlsRedis is a redis-server listening only for TLS on loopback, with a
// certificate for 127.0.0.1 signed by a CA made for the test.
type tlsRedis struct {
	addr     string
	password string
	caFile   string
	pool     *x509.CertPool
}

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it.
func testCA(t testing.TB, dir, name string) (pool *x509.CertPool, caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, write(name+"-ca.pem", "CERTIFICATE", caDER), write(name+"-server.pem", "CERTIFICATE", der), write(name+"-server.key", "PRIVATE KEY", keyDER)
}

// startTLSRedis starts a redis-server that speaks only TLS (no plain
// port) and asks for a password; stopped by t.Cleanup. Debian's
// redis-server (make test-deps) is built with TLS.
func startTLSRedis(t testing.TB) *tlsRedis {
	t.Helper()
	dir := t.TempDir()
	pool, caFile, certFile, keyFile := testCA(t, dir, "redis")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	const password = "tls pass"
	cmd := exec.Command("redis-server",
		"--port", "0",
		"--tls-port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--tls-cert-file", certFile,
		"--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no",
		"--requirepass", password,
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
	)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (make test-deps): %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	r := &tlsRedis{addr: "127.0.0.1:" + strconv.Itoa(port), password: password, caFile: caFile, pool: pool}
	c := redis.NewClient(r.options(pool, 0))
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server with TLS exited (is it built with TLS?): %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server with TLS never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// options are go-redis options for the server trusting pool (none: a
// plain connection).
func (r *tlsRedis) options(pool *x509.CertPool, db int) *redis.Options {
	o := &redis.Options{Addr: r.addr, Password: r.password, DB: db}
	if pool != nil {
		o.TLSConfig = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	return o
}

// rawOver is the raw reader of a go-redis client built from o, as a
// rediss:// store builds it.
func rawOver(t *testing.T, o *redis.Options) *rawReader {
	t.Helper()
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	r := newRawReader(c, "rediss")
	if r == nil {
		t.Fatal("no raw reader for a rediss client")
	}
	t.Cleanup(r.Close)
	return r
}

// TestRawReadOverTLS: on a rediss:// store the batcher's own connection is
// TLS, verified against the client's roots (as go-redis's own connections
// are), authenticates and selects the database over it, reads what
// go-redis reads (a value longer than a TLS record included), and redials
// a killed connection. A server it cannot verify, or a plain connection to
// the TLS port, is an error: the decisions fail closed.
func TestRawReadOverTLS(t *testing.T) {
	srv := startTLSRedis(t)
	ctx := rawCtx(t)
	w := redis.NewClient(srv.options(srv.pool, 3))
	defer w.Close()
	bin := "\x00\x01\r\n$-1\r\n\xff"
	long := strings.Repeat("x", 70000) // over four TLS records
	if err := w.HSet(ctx, "b:1", "m1", "inline-1", "m2", bin).Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Set(ctx, "o:m2", long, 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := rawOver(t, srv.options(srv.pool, 3))
	for round := range 3 { // dialled, kept, dialled again after a kill
		in, ov, err := r.readRecords(ctx, []string{"b:1", "b:1", "b:2"}, []string{"m1", "m2", "m1"}, []string{"o:m1", "o:m2", ""})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if want := []string{"inline-1", bin, ""}; !equal(in, want) {
			t.Errorf("round %d: inline = %q, want %q", round, in, want)
		}
		if want := []string{"", long, ""}; !equal(ov, want) {
			t.Errorf("round %d: overflow lengths = %d %d %d, want 0 70000 0", round, len(ov[0]), len(ov[1]), len(ov[2]))
		}
		if _, ok := r.conn.(*tls.Conn); !ok {
			t.Fatalf("round %d: the raw connection is a %T, not TLS", round, r.conn)
		}
		// Are they the bytes go-redis reads?
		if got, err := w.Get(ctx, "o:m2").Result(); err != nil || got != ov[1] {
			t.Fatalf("round %d: go-redis reads %d bytes (%v), raw %d", round, len(got), err, len(ov[1]))
		}
		if round == 1 {
			if err := w.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}

	other, _, _, _ := testCA(t, t.TempDir(), "other")
	for _, tc := range []struct {
		name string
		o    *redis.Options
	}{
		{"server signed by an unknown CA", srv.options(other, 3)},
		{"server named otherwise", func() *redis.Options {
			o := srv.options(srv.pool, 3)
			o.TLSConfig.ServerName = "redis.example"
			return o
		}()},
		{"wrong password", func() *redis.Options {
			o := srv.options(srv.pool, 3)
			o.Password = "wrong"
			return o
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := rawOver(t, tc.o)
			in, _, err := bad.readRecords(ctx, []string{"b:1"}, []string{"m1"}, []string{""})
			if err == nil {
				t.Fatalf("read succeeded: %q", in)
			}
			if bad.conn != nil {
				t.Error("connection kept after a failed set-up")
			}
		})
	}
	t.Run("plain connection to the TLS port", func(t *testing.T) {
		c := redis.NewClient(srv.options(nil, 3))
		defer c.Close()
		r := newRawReader(c, "redis")
		defer r.Close()
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if in, _, err := r.readRecords(pctx, []string{"b:1"}, []string{"m1"}, []string{""}); err == nil {
			t.Fatalf("read succeeded: %q", in)
		}
		if r.conn != nil {
			t.Error("connection kept after an error")
		}
	})
}
