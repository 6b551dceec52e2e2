package redisstore

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/model"
)

// A subject's record is one binary value: a 6-byte due score that the
// Lua scripts read and rewrite (recompute marks, the bucket's lowest
// score), a flags byte, then the body. Strings are length-prefixed; names
// that repeat across millions of records — entities, legalisation ids,
// actors — are symbol codes (see symbols.go); generated evidence ids are
// stored as their raw bytes. A subject with one evidence record takes
// about 45 bytes, so that it stays inside its bucket's compact encoding.
//
//	[0:6]  due score, big-endian signed 48 bits: unix ms (>0), recompute
//	       mark (<0), scoreNever (no next transition)
//	[6]    flags: flagStub = the body is in the overflow key
//	[7:]   body: presence byte, then the present parts in this order:
//	       recorded origin (source byte, time), meta (PutSubject: flags,
//	       origin, parent), restriction, applied lifecycle state, children,
//	       evidence
const (
	scoreLen   = 6
	headerLen  = scoreLen + 1
	scoreNever = int64(1)<<47 - 1
	scoreMin   = -(int64(1) << 47)

	flagStub = 0x01

	hasSeen        = 0x01
	hasMeta        = 0x02
	hasRestriction = 0x04
	hasApplied     = 0x08
	hasChildren    = 0x10
	hasEvidence    = 0x20

	metaOrigin = 0x01
	metaParent = 0x02

	// Common parts first: their presence bits fit the first varint byte.
	evOrigin    = 1 << 0
	evKey       = 1 << 1
	evCreatedAt = 1 << 2
	evCreatedBy = 1 << 3
	evReference = 1 << 4
	evCommIDs   = 1 << 5
	evContact   = 1 << 6
	evProject   = 1 << 7
	evRenewed   = 1 << 8

	idLiteral   = 0
	idGenerated = 1 // "ev-" + 16 lowercase hex digits
	idContent   = 2 // "ev-c" + 24 lowercase hex digits
)

// record is everything stored for one subject.
type record struct {
	score int64
	// seen is the recorded origin (RecordOrigin, first evidence) and
	// seenSrc how it was learnt.
	seen        time.Time
	seenSrc     cache.OriginSource
	meta        *model.Subject // PutSubject's origin and parent; Ref unused
	restriction string
	applied     cache.Applied
	children    []model.SubjectRef
	evidence    []model.Evidence
}

// exists reports whether anything is stored (an empty record is deleted).
func (r *record) exists() bool {
	return !r.seen.IsZero() || r.meta != nil || r.restriction != "" || r.applied != (cache.Applied{}) ||
		len(r.children) > 0 || len(r.evidence) > 0
}

// scoreOf converts a cache.Due score to the stored form.
func scoreOf(f float64) int64 {
	switch {
	case math.IsInf(f, 1) || f >= float64(scoreNever):
		return scoreNever
	case f <= float64(scoreMin):
		return scoreMin
	}
	return int64(f)
}

// dueScore converts a stored score to cache.Due's form.
func dueScore(s int64) float64 {
	if s >= scoreNever {
		return cache.NoTransition
	}
	return float64(s)
}

func putScore(b []byte, s int64) {
	u := uint64(s) & (1<<48 - 1)
	for i := scoreLen - 1; i >= 0; i-- {
		b[i] = byte(u)
		u >>= 8
	}
}

func readScore(b []byte) int64 {
	var u uint64
	for i := range scoreLen {
		u = u<<8 | uint64(b[i])
	}
	if u&(1<<47) != 0 {
		u |= 0xFFFF_0000_0000_0000
	}
	return int64(u)
}

// symbolTable is what the codec needs of the symbols: codes of the names it
// writes and names of the codes it reads.
type symbolTable interface {
	code(kind byte, name string) (uint64, bool)
	name(kind byte, code uint64) (string, bool)
}

// Symbol kinds.
const (
	symEntity       = 'e'
	symLegalisation = 'l'
	symActor        = 'a'
)

var errUnknownSymbol = errors.New("redisstore: unknown symbol code")

type encoder struct {
	b   []byte
	sym symbolTable
	err error
}

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }

func (e *encoder) symbol(kind byte, name string) {
	c, ok := e.sym.code(kind, name)
	if !ok && e.err == nil {
		e.err = fmt.Errorf("redisstore: no symbol code for %c %q (not interned)", kind, name)
	}
	e.uvarint(c)
}

// Times are seconds from timeBase, zigzag, with a bit saying nanoseconds
// follow; decoded times are UTC.
const timeBase = 1_700_000_000

func (e *encoder) time(t time.Time) {
	d := t.Unix() - timeBase
	z := uint64(d<<1) ^ uint64(d>>63)
	ns := t.Nanosecond()
	v := z << 1
	if ns != 0 {
		v |= 1
	}
	e.uvarint(v)
	if ns != 0 {
		e.uvarint(uint64(ns))
	}
}

func (e *encoder) ref(r model.SubjectRef) {
	e.symbol(symEntity, r.Entity)
	e.str(r.ID)
}

func (e *encoder) evidenceID(id string) {
	switch {
	case len(id) == 19 && id[:3] == "ev-" && lowerHex(id[3:]):
		e.b = append(e.b, idGenerated)
		e.b, _ = hex.AppendDecode(e.b, []byte(id[3:]))
	case len(id) == 28 && id[:4] == "ev-c" && lowerHex(id[4:]):
		e.b = append(e.b, idContent)
		e.b, _ = hex.AppendDecode(e.b, []byte(id[4:]))
	default:
		e.b = append(e.b, idLiteral)
		e.str(id)
	}
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// encodeRecord returns the full record (header and body).
func encodeRecord(r *record, sym symbolTable) ([]byte, error) {
	return appendRecord(make([]byte, 0, 64), r, sym)
}

// appendRecord appends the full record to dst (a write encodes all its
// records into one buffer).
func appendRecord(dst []byte, r *record, sym symbolTable) ([]byte, error) {
	at := len(dst)
	e := encoder{b: append(dst, make([]byte, headerLen)...), sym: sym}
	putScore(e.b[at:], r.score)
	var p byte
	if !r.seen.IsZero() {
		p |= hasSeen
	}
	if r.meta != nil {
		p |= hasMeta
	}
	if r.restriction != "" {
		p |= hasRestriction
	}
	if r.applied != (cache.Applied{}) {
		p |= hasApplied
	}
	if len(r.children) > 0 {
		p |= hasChildren
	}
	if len(r.evidence) > 0 {
		p |= hasEvidence
	}
	e.b = append(e.b, p)
	if p&hasSeen != 0 {
		e.b = append(e.b, byte(r.seenSrc))
		e.time(r.seen)
	}
	if p&hasMeta != 0 {
		var m byte
		if !r.meta.Origin.IsZero() {
			m |= metaOrigin
		}
		if r.meta.Parent != nil {
			m |= metaParent
		}
		e.b = append(e.b, m)
		if m&metaOrigin != 0 {
			e.time(r.meta.Origin)
		}
		if m&metaParent != 0 {
			e.ref(*r.meta.Parent)
		}
	}
	if p&hasRestriction != 0 {
		e.str(r.restriction)
	}
	if p&hasApplied != 0 {
		e.uvarint(uint64(r.applied.Obliviated))
		e.uvarint(uint64(r.applied.Round))
	}
	if p&hasChildren != 0 {
		e.uvarint(uint64(len(r.children)))
		for _, c := range r.children {
			e.ref(c)
		}
	}
	if p&hasEvidence != 0 {
		e.uvarint(uint64(len(r.evidence)))
		for i := range r.evidence {
			e.evidence(&r.evidence[i])
		}
	}
	return e.b, e.err
}

func (e *encoder) evidence(ev *model.Evidence) {
	var p uint64
	set := func(bit uint64, on bool) {
		if on {
			p |= bit
		}
	}
	set(evKey, ev.EvidenceKey != "")
	set(evReference, ev.Reference != "")
	set(evCommIDs, len(ev.CommIDs) > 0)
	set(evContact, ev.ContactID != "")
	set(evProject, ev.ProjectID != "")
	set(evRenewed, ev.RenewedAt != nil)
	set(evCreatedAt, !ev.CreatedAt.IsZero())
	set(evCreatedBy, ev.CreatedBy != "")
	set(evOrigin, !ev.Origin.IsZero())
	e.uvarint(p)
	e.evidenceID(ev.ID)
	e.symbol(symLegalisation, ev.LegalisationID)
	if p&evOrigin != 0 {
		e.time(ev.Origin)
	}
	if p&evKey != 0 {
		e.str(ev.EvidenceKey)
	}
	if p&evReference != 0 {
		e.str(ev.Reference)
	}
	if p&evCommIDs != 0 {
		e.uvarint(uint64(len(ev.CommIDs)))
		for _, c := range ev.CommIDs {
			e.str(c)
		}
	}
	if p&evContact != 0 {
		e.str(ev.ContactID)
	}
	if p&evProject != 0 {
		e.str(ev.ProjectID)
	}
	if p&evRenewed != 0 {
		e.time(*ev.RenewedAt)
	}
	if p&evCreatedAt != 0 {
		e.time(ev.CreatedAt)
	}
	if p&evCreatedBy != 0 {
		e.symbol(symActor, ev.CreatedBy)
	}
}

var errCorrupt = errors.New("redisstore: corrupt record")

type decoder struct {
	b   []byte
	sym symbolTable
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail(errCorrupt)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.fail(errCorrupt)
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string { return string(d.bytes(d.uvarint())) }

func (d *decoder) symbol(kind byte) string {
	c := d.uvarint()
	if d.err != nil {
		return ""
	}
	n, ok := d.sym.name(kind, c)
	if !ok {
		d.fail(fmt.Errorf("%w %d (%c)", errUnknownSymbol, c, kind))
	}
	return n
}

func (d *decoder) time() time.Time {
	v := d.uvarint()
	z := v >> 1
	secs := int64(z>>1) ^ -int64(z&1)
	var ns uint64
	if v&1 != 0 {
		ns = d.uvarint()
	}
	return time.Unix(secs+timeBase, int64(ns)).UTC()
}

func (d *decoder) ref() model.SubjectRef {
	e := d.symbol(symEntity)
	return model.SubjectRef{Entity: e, ID: d.str()}
}

func (d *decoder) evidenceID() string {
	switch d.byte() {
	case idGenerated:
		return "ev-" + hex.EncodeToString(d.bytes(8))
	case idContent:
		return "ev-c" + hex.EncodeToString(d.bytes(12))
	case idLiteral:
		return d.str()
	}
	d.fail(errCorrupt)
	return ""
}

// decodeRecord decodes a record for subject ref. inline is the bucket's
// value, overflow the overflow key's ("" when none). An empty inline value
// is a subject with nothing stored.
func decodeRecord(ref model.SubjectRef, inline, overflow string, sym symbolTable) (*record, error) {
	r := &record{score: scoreNever}
	if inline == "" {
		return r, nil
	}
	if len(inline) < headerLen {
		return nil, errCorrupt
	}
	r.score = readScore([]byte(inline))
	body := inline[headerLen:]
	if inline[scoreLen]&flagStub != 0 {
		if len(overflow) < headerLen {
			return nil, fmt.Errorf("%w: overflow value missing", errCorrupt)
		}
		body = overflow[headerLen:]
	}
	// The decoder only reads its bytes, and what it keeps it copies (str,
	// evidenceID): a view of body, not a copy per record read.
	d := decoder{b: unsafe.Slice(unsafe.StringData(body), len(body)), sym: sym}
	p := d.byte()
	if p&hasSeen != 0 {
		r.seenSrc = cache.OriginSource(d.byte())
		r.seen = d.time()
	}
	if p&hasMeta != 0 {
		m := d.byte()
		r.meta = &model.Subject{Ref: ref}
		if m&metaOrigin != 0 {
			r.meta.Origin = d.time()
		}
		if m&metaParent != 0 {
			par := d.ref()
			r.meta.Parent = &par
		}
	}
	if p&hasRestriction != 0 {
		r.restriction = d.str()
	}
	if p&hasApplied != 0 {
		r.applied.Obliviated = uint32(d.uvarint())
		r.applied.Round = int(d.uvarint())
	}
	if p&hasChildren != 0 {
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			return nil, errCorrupt
		}
		for range n {
			r.children = append(r.children, d.ref())
		}
	}
	if p&hasEvidence != 0 {
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			return nil, errCorrupt
		}
		if n > 0 {
			r.evidence = make([]model.Evidence, n)
			for i := range r.evidence {
				d.evidence(&r.evidence[i], ref)
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return r, nil
}

func (d *decoder) evidence(ev *model.Evidence, ref model.SubjectRef) {
	p := d.uvarint()
	ev.Subject = ref
	ev.ID = d.evidenceID()
	ev.LegalisationID = d.symbol(symLegalisation)
	if p&evOrigin != 0 {
		ev.Origin = d.time()
	}
	if p&evKey != 0 {
		ev.EvidenceKey = d.str()
	}
	if p&evReference != 0 {
		ev.Reference = d.str()
	}
	if p&evCommIDs != 0 {
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			d.fail(errCorrupt)
			return
		}
		for range n {
			ev.CommIDs = append(ev.CommIDs, d.str())
		}
	}
	if p&evContact != 0 {
		ev.ContactID = d.str()
	}
	if p&evProject != 0 {
		ev.ProjectID = d.str()
	}
	if p&evRenewed != 0 {
		t := d.time()
		ev.RenewedAt = &t
	}
	if p&evCreatedAt != 0 {
		ev.CreatedAt = d.time()
	}
	if p&evCreatedBy != 0 {
		ev.CreatedBy = d.symbol(symActor)
	}
}

// splitRecord turns an encoded record into what is stored: the bucket value
// and the overflow value ("" when the record fits inline). The bucket's
// stub of an overflowing record keeps the score, flags and the presence
// byte, so that the index walks need not read the overflow.
func splitRecord(full []byte) (inline, overflow string) {
	return splitRecordString(string(full))
}

// splitRecordString is splitRecord of a record already a string (a
// substring of a write's buffer): an inline record costs no copy.
func splitRecordString(full string) (inline, overflow string) {
	if len(full) <= maxInline {
		return full, ""
	}
	var stub [headerLen + 1]byte
	copy(stub[:], full[:scoreLen])
	stub[scoreLen] = flagStub
	stub[headerLen] = full[headerLen]
	return string(stub[:]), full
}

// indexed reports whether a stored bucket value belongs in the lifecycle
// index: everything but a record that only lists children (a parent
// nothing else is known of).
func indexed(inline string) bool {
	return len(inline) > headerLen && inline[headerLen]&^hasChildren != 0
}

func sortByID(evs []model.Evidence) {
	slices.SortFunc(evs, func(a, b model.Evidence) int { return strings.Compare(a.ID, b.ID) })
}
