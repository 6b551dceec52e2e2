package loadgen

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gdprgate/gdprgate/authz/envoytest"
)

// Uniform spreads Checks uniformly at random over Subjects subject ids —
// GET <PathPrefix><IDPrefix><n> with n in [0, Subjects) — so that with more
// subjects than the server's local cache holds, most Checks miss it. That is
// the load of a large contact centre where any contact may call.
type Uniform struct {
	Subjects   int
	PathPrefix string // default "/api/contacts/"
	IDPrefix   string // default "u-"
	Roles      string // default "agent"
	// Seed makes the sequence repeatable; each worker derives its own.
	Seed uint64
}

// generator returns one worker's request source. The request it returns is
// reused by the next call: a worker sends it before asking for another.
func (u Uniform) generator(worker int) (func() *authv3.CheckRequest, error) {
	if u.Subjects <= 0 {
		return nil, fmt.Errorf("uniform load needs a positive number of subjects (got %d)", u.Subjects)
	}
	if u.PathPrefix == "" {
		u.PathPrefix = "/api/contacts/"
	}
	if u.IDPrefix == "" {
		u.IDPrefix = "u-"
	}
	if u.Roles == "" {
		u.Roles = "agent"
	}
	e := envoytest.New(envoytest.Options{})
	defer e.Close()
	req, err := http.NewRequest(http.MethodGet, "http://crm.internal"+u.PathPrefix+u.IDPrefix+"0", nil)
	if err != nil {
		return nil, fmt.Errorf("uniform load: %w", err)
	}
	req.Header.Set("x-gdpr-roles", u.Roles)
	tmpl, err := e.CheckRequest(req)
	if err != nil {
		return nil, fmt.Errorf("uniform load: %w", err)
	}
	cur := proto.Clone(tmpl).(*authv3.CheckRequest)
	h := cur.GetAttributes().GetRequest().GetHttp()
	rng := rand.New(rand.NewPCG(u.Seed, uint64(worker)+1))
	buf := make([]byte, 0, len(u.PathPrefix)+len(u.IDPrefix)+20)
	return func() *authv3.CheckRequest {
		buf = append(buf[:0], u.PathPrefix...)
		buf = append(buf, u.IDPrefix...)
		buf = strconv.AppendInt(buf, int64(rng.IntN(u.Subjects)), 10)
		p := string(buf)
		h.Path = p
		h.Headers[":path"] = p
		return cur
	}, nil
}
