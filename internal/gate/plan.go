package gate

import (
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash"
	"sync"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Sealed plans. ext_authz decides a request in full; ext_proc, next in
// Envoy's chain, needs that decision again for the response (route,
// caller, subject, visible mask). Rather than derive it a second time, the
// Check puts it in its dynamic metadata ("plan") and Envoy forwards that
// namespace to ext_proc (metadata_options.forwarding_namespaces).
//
// Envoy's dynamic metadata is not only ext_authz's to write: any filter
// before ext_proc may set keys in the ext_authz namespace (set_metadata,
// header_to_metadata copying a client's header, Lua, Wasm), ext_authz
// merges its answer into what is there (a key it does not write survives),
// ext_proc falls back to the connection's metadata when the request has
// none, and with failure_mode_allow or a route where ext_authz is disabled
// no Check writes anything. So a plan is believed only when it proves
// itself: it is sealed with an HMAC under a key only gdprgate holds
// (derived from the hash key, or random per process when none is
// configured, and from the route map, so that a replica with another
// route map cannot open it), bound to the request (method, path,
// authority, x-request-id) and to what the caller's identity is read from
// (Authorization and the identity headers), and fresh (planValidity). Anything else is
// ignored and ext_proc decides again from the request, as it always could.
// Check always writes the key, empty when there is no plan, so that no
// earlier filter's value survives ext_authz's merge.

// planMetadataKey is the plan's key in ext_authz's dynamic metadata.
const planMetadataKey = "plan"

// PlanMetadataKey is the key Check's dynamic metadata carries the sealed
// plan under (always set; empty when the request has no plan).
const PlanMetadataKey = planMetadataKey

// planValidity bounds how long after the Check a plan is believed: ext_proc
// reads it right after ext_authz answered (the request headers phase), so
// this only has to cover clock differences between replicas.
const planValidity = 60 * time.Second

const (
	planVersion = 1
	planMACLen  = 16
)

// planFlags
const (
	planHasSubject = 1 << iota
	planMaskSet
	planRect
)

// shadow byte of a plan
const (
	planEnforced = iota
	planShadow
	planShadowWouldDeny // followed by the status and reason
)

// planKeys derives the sealing key.
type planKeys struct {
	key  []byte
	pool sync.Pool // hash.Hash (HMAC-SHA256 under key)
}

// newPlanKeys derives the key from secret (nil: a random one, good within
// this process only) and the route map.
func newPlanKeys(secret []byte, routes []config.Route) *planKeys {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = crand.Read(secret)
	}
	fp, err := json.Marshal(routes)
	if err != nil {
		// A route map that does not serialise: plans stay within this
		// process.
		fp = make([]byte, 32)
		_, _ = crand.Read(fp)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("gdprgate ext_authz plan v1\x00"))
	m.Write(fp)
	k := &planKeys{key: m.Sum(nil)}
	k.pool.New = func() any { return hmac.New(sha256.New, k.key) }
	return k
}

// mac appends to dst the seal of msg: a plan's payload followed by its
// request's binding (appendBinding). dst may share msg's array: msg is
// read whole before dst is written.
func (k *planKeys) mac(dst, msg []byte) []byte {
	h := k.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	dst = h.Sum(dst)
	k.pool.Put(h)
	return dst[:len(dst)-sha256.Size+planMACLen]
}

// appendBinding appends what of a request a plan is bound to: the request
// line, the request id Envoy gives it, and everything the caller's
// identity is read from (the identity headers and Authorization), so that
// a plan cannot serve another request or another caller. Each is
// length-prefixed: no two bindings write the same bytes.
func (g *Gate) appendBinding(b []byte, req *Request) []byte {
	for _, s := range [...]string{req.Method, req.Path, req.Host, req.Header("x-request-id"), req.Header("authorization")} {
		b = appendStr(b, s)
	}
	for _, h := range g.identityHeaders {
		b = appendStr(b, req.Header(h))
	}
	return b
}

// seal returns the sealed plan of an allowed exchange ("" when it cannot
// have one: see sealable).
func (g *Gate) seal(ex *Exchange, req *Request) string {
	if !sealable(ex) {
		return ""
	}
	bp := planBufs.Get().(*[]byte)
	defer putPlanBuf(bp)
	*bp = g.sealed((*bp)[:0], ex, req)
	return base64.RawURLEncoding.EncodeToString(*bp)
}

// AppendPlan appends to dst the sealed plan SealPlan returns, without
// building the string.
func (g *Gate) AppendPlan(dst []byte, ex *Exchange, req *Request) []byte {
	if !sealable(ex) {
		return dst
	}
	bp := planBufs.Get().(*[]byte)
	defer putPlanBuf(bp)
	*bp = g.sealed((*bp)[:0], ex, req)
	return base64.RawURLEncoding.AppendEncode(dst, *bp)
}

// sealable reports whether an exchange has a plan: not when denied, nor a
// communication route whose plan needs the request body.
func sealable(ex *Exchange) bool {
	return ex.Verdict.Allow && ex.comm == nil && !ex.needsRequestBody
}

// planBufs holds the buffers plans are built in before their encoding.
var planBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// putPlanBuf returns a plan buffer unless a huge binding grew it.
func putPlanBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		planBufs.Put(bp)
	}
}

// sealed appends to p (empty) the plan of ex, sealed for req, unencoded.
func (g *Gate) sealed(p []byte, ex *Exchange, req *Request) []byte {
	p = append(p, planVersion)
	p = binary.AppendVarint(p, g.now().UnixMilli())
	p = appendStr(p, ex.DecisionID)
	if ex.route == nil {
		p = binary.AppendUvarint(p, 0)
	} else {
		p = binary.AppendUvarint(p, uint64(ex.route.index)+1)
		var flags byte
		if ex.hasSubj {
			flags |= planHasSubject
		}
		if ex.layer != nil && ex.layer.maskSet {
			flags |= planMaskSet
		}
		if ex.rect != nil {
			flags |= planRect
		}
		p = append(p, flags)
		if ex.hasSubj {
			p = appendStr(p, ex.subject.Entity)
			p = appendStr(p, ex.subject.ID)
			p = append(p, byte(ex.origin))
		}
		p = binary.AppendUvarint(p, uint64(ex.visible))
		if flags&planMaskSet != 0 {
			p = binary.AppendUvarint(p, uint64(ex.layer.mask))
		}
		p = appendFacts(p, &ex.base)
		p = binary.AppendUvarint(p, uint64(len(ex.Verdict.ResponseHeaders)))
		for k, v := range ex.Verdict.ResponseHeaders {
			p = appendStr(p, k)
			p = appendStr(p, v)
		}
		if r := ex.rect; r != nil {
			for _, s := range [...]string{r.Route, r.Actor, r.Subject, r.Fields, r.DecisionID} {
				p = appendStr(p, s)
			}
		}
	}
	switch sh := ex.shadow; {
	case sh == nil:
		p = append(p, planEnforced)
	case sh.wouldDeny:
		p = append(p, planShadowWouldDeny)
		p = binary.AppendUvarint(p, uint64(sh.status))
		p = appendStr(p, sh.reason)
	default:
		p = append(p, planShadow)
	}
	n := len(p)
	return g.planKeys.mac(p[:n], g.appendBinding(p, req))
}

// SealPlan returns the sealed plan of an exchange Check decided for req,
// for ext_authz's dynamic metadata ("" when there is none).
func (g *Gate) SealPlan(ex *Exchange, req *Request) string { return g.seal(ex, req) }

var errPlan = errors.New("plan not believed")

// openPlan returns the exchange a forwarded plan describes, or an error
// saying why it is not believed (absent, forged, stale, another request's).
func (g *Gate) openPlan(req *Request) (*Exchange, string, error) {
	ns := req.filterMetadata(authzNamespace)
	sealed := ns.GetFields()[planMetadataKey].GetStringValue()
	if sealed == "" {
		return nil, "absent", errPlan
	}
	if len(sealed) > 8192 {
		return nil, "invalid", errPlan
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(raw) < planMACLen+2 {
		return nil, "invalid", errPlan
	}
	payload, mac := raw[:len(raw)-planMACLen], raw[len(raw)-planMACLen:]
	var buf [sha256.Size]byte
	msg := g.appendBinding(append(make([]byte, 0, len(payload)+256), payload...), req)
	if !hmac.Equal(mac, g.planKeys.mac(buf[:0], msg)) {
		// Forged, sealed by a replica with another key or route map, or
		// another request's.
		return nil, "invalid", errPlan
	}
	d := planDecoder{b: payload}
	if d.byte() != planVersion {
		return nil, "invalid", errPlan
	}
	issued := time.UnixMilli(d.varint())
	if age := g.now().Sub(issued); age > planValidity || age < -planValidity {
		return nil, "stale", errPlan
	}
	ex := &Exchange{DecisionID: d.str()}
	ri := d.uvarint()
	var tbl *table
	if ri > 0 {
		if tbl = g.table.Load(); tbl == nil || ri > uint64(len(tbl.all)) {
			return nil, "invalid", errPlan
		}
		ex.route = tbl.all[ri-1]
		flags := d.byte()
		if flags&planHasSubject != 0 {
			ex.hasSubj = true
			ex.subject = model.SubjectRef{Entity: d.str(), ID: d.str()}
			ex.origin = cache.OriginSource(d.byte())
		}
		ex.visible = uint32(d.uvarint())
		if flags&planMaskSet != 0 {
			ex.layer = &layerState{mask: uint32(d.uvarint()), maskSet: true}
		}
		d.facts(&ex.base)
		if n := d.uvarint(); n > 0 && n < 64 {
			ex.Verdict.ResponseHeaders = make(map[string]string, n)
			for range n {
				k := d.str()
				ex.Verdict.ResponseHeaders[k] = d.str()
			}
		}
		if flags&planRect != 0 {
			ex.rect = &Rectification{Route: d.str(), Actor: d.str(), Subject: d.str(), Fields: d.str(), DecisionID: d.str()}
		}
	}
	switch d.byte() {
	case planEnforced:
	case planShadow:
		ex.shadow = &shadowState{}
	case planShadowWouldDeny:
		ex.shadow = &shadowState{wouldDeny: true, status: int(d.uvarint()), reason: d.str()}
	default:
		d.err = true
	}
	if d.err || len(d.b) != 0 {
		return nil, "invalid", errPlan
	}
	if ex.Verdict.ResponseHeaders == nil {
		ex.Verdict.ResponseHeaders = map[string]string{}
	}
	ex.Verdict.Allow, ex.Verdict.Status, ex.Verdict.Reason = true, 200, "plan"
	ex.Verdict.UpstreamHeaders = map[string]string{HeaderDecisionID: ex.DecisionID}
	if ex.route == nil {
		ex.Verdict.Reason = "unmapped"
	}
	if ex.shadow != nil && ex.shadow.wouldDeny {
		ex.Verdict.Reason = "shadow"
	}
	return ex, "reused", nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendFacts encodes every field of f (TestPlanCarriesEveryFact fails
// when a field is added to policy.Facts and not here).
func appendFacts(b []byte, f *policy.Facts) []byte {
	for _, s := range [...]string{f.RouteKind, f.CommType, f.Roles, f.Coverage} {
		b = appendStr(b, s)
	}
	for _, u := range [...]uint32{f.SensitivityMask, f.Active, f.Archived, f.Expired, f.Obliviated,
		f.CoverageExplicit, f.CoverageInherited, f.WriteMask} {
		b = binary.AppendUvarint(b, uint64(u))
	}
	var bits uint32
	for i, v := range [...]bool{f.Enforced, f.Authenticated, f.ViewArchived, f.ViewExpired, f.ExportEvidence,
		f.EditItems, f.EditEvidence, f.GdprPermission, f.ArchiveMode, f.SubjectPresent, f.SubjectKnown,
		f.Restricted, f.CommPermitted, f.Unavailable, f.FailOpen} {
		if v {
			bits |= 1 << i
		}
	}
	return binary.AppendUvarint(b, uint64(bits))
}

type planDecoder struct {
	b   []byte
	err bool
}

func (d *planDecoder) byte() byte {
	if len(d.b) == 0 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *planDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *planDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *planDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *planDecoder) facts(f *policy.Facts) {
	for _, s := range [...]*string{&f.RouteKind, &f.CommType, &f.Roles, &f.Coverage} {
		*s = d.str()
	}
	for _, u := range [...]*uint32{&f.SensitivityMask, &f.Active, &f.Archived, &f.Expired, &f.Obliviated,
		&f.CoverageExplicit, &f.CoverageInherited, &f.WriteMask} {
		*u = uint32(d.uvarint())
	}
	bits := d.uvarint()
	for i, v := range [...]*bool{&f.Enforced, &f.Authenticated, &f.ViewArchived, &f.ViewExpired, &f.ExportEvidence,
		&f.EditItems, &f.EditEvidence, &f.GdprPermission, &f.ArchiveMode, &f.SubjectPresent, &f.SubjectKnown,
		&f.Restricted, &f.CommPermitted, &f.Unavailable, &f.FailOpen} {
		*v = bits&(1<<i) != 0
	}
}
