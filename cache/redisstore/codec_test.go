package redisstore

import (
	"encoding/binary"
	"hash/fnv"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/model"
)

// testSyms is a symbol table that knows every name it is asked for.
type testSyms struct {
	byName map[symName]uint64
	byCode map[uint64]symName
}

func newTestSyms() *testSyms {
	return &testSyms{byName: map[symName]uint64{}, byCode: map[uint64]symName{}}
}

func (t *testSyms) code(kind byte, name string) (uint64, bool) {
	k := symName{kind, name}
	c, ok := t.byName[k]
	if !ok {
		c = uint64(len(t.byName) + 1)
		t.byName[k], t.byCode[c] = c, k
	}
	return c, true
}

func (t *testSyms) name(kind byte, code uint64) (string, bool) {
	n, ok := t.byCode[code]
	return n.name, ok && n.kind == kind
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestRecordRoundTrips(t *testing.T) {
	ref := model.SubjectRef{Entity: "contact", ID: "c-1"}
	parent := model.SubjectRef{Entity: "contact", ID: "c-0"}
	renewed := t0.Add(-time.Hour)
	full := &record{
		score:       -42,
		seen:        t0.Add(-5 * 24 * time.Hour),
		seenSrc:     cache.OriginStated,
		meta:        &model.Subject{Ref: ref, Origin: t0.Add(-100 * 24 * time.Hour), Parent: &parent},
		restriction: "w-1",
		applied:     cache.Applied{Obliviated: 0b1000, Round: 3},
		children:    []model.SubjectRef{{Entity: "phone_number", ID: "+420123"}, {Entity: "phone_number", ID: "+420\x00odd"}},
		evidence: []model.Evidence{
			{ID: "ev-0123456789abcdef", Subject: ref, LegalisationID: "contract-care", Origin: t0.Add(-10 * 24 * time.Hour), CreatedBy: "import", CreatedAt: t0},
			{ID: "ev-c0123456789abcdef01234567", Subject: ref, LegalisationID: "marketing-consent", EvidenceKey: "web-1", Reference: "form 7",
				CommIDs: []string{"call-1", "call-2"}, ContactID: "k-1", ProjectID: "p-1", Origin: t0.Add(123456789 * time.Nanosecond), RenewedAt: &renewed},
			{ID: "EV-Not-Hex", Subject: ref, LegalisationID: "x", Origin: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
			{ID: "ev-0123456789ABCDEF", Subject: ref, LegalisationID: "x"}, // upper case: not compacted, kept as is
		},
	}
	cases := map[string]*record{
		"empty but indexed": {score: scoreNever, seen: t0, seenSrc: cache.OriginObserved},
		"everything":        full,
		"far future score":  {score: 1 << 46, meta: &model.Subject{Ref: ref}},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			sym := newTestSyms()
			b, err := encodeRecord(r, sym)
			if err != nil {
				t.Fatal(err)
			}
			inline, overflow := splitRecord(b)
			if len(inline) > maxInline {
				t.Fatalf("inline value of %d bytes: buckets lose their compact encoding", len(inline))
			}
			got, err := decodeRecord(ref, inline, overflow, sym)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
			}
		})
	}
}

func TestOneEvidenceRecordFitsInline(t *testing.T) {
	// What an import of a contact with one consent stores.
	ref := model.SubjectRef{Entity: "contact", ID: "c-10000001"}
	r := &record{score: -1, seen: t0, seenSrc: cache.OriginObserved, evidence: []model.Evidence{{
		ID: "ev-0123456789abcdef", Subject: ref, LegalisationID: "contract-care", EvidenceKey: "imp-10000001",
		Origin: t0.Add(-30 * 24 * time.Hour), CreatedAt: t0, CreatedBy: "import-token",
	}}}
	b, err := encodeRecord(r, newTestSyms())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 50 {
		t.Fatalf("a subject with one evidence takes %d bytes, want at most 50 (memory per subject)", len(b))
	}
}

func TestCorruptRecordsAreRefused(t *testing.T) {
	sym := newTestSyms()
	ref := model.SubjectRef{Entity: "contact", ID: "c-1"}
	b, err := encodeRecord(&record{score: 1, seen: t0, seenSrc: cache.OriginObserved, evidence: []model.Evidence{{ID: "ev-1", LegalisationID: "l"}}}, sym)
	if err != nil {
		t.Fatal(err)
	}
	for i := headerLen; i < len(b); i++ {
		if _, err := decodeRecord(ref, string(b[:i]), "", sym); err == nil {
			t.Fatalf("a record cut at %d of %d bytes decoded", i, len(b))
		}
	}
	if _, err := decodeRecord(ref, string(b)+"x", "", sym); err == nil {
		t.Fatal("trailing bytes accepted")
	}
	stub, _ := splitRecord(append(b, strings.Repeat("\x00", 100)...))
	if _, err := decodeRecord(ref, stub, "", sym); err == nil {
		t.Fatal("a stub without its overflow value decoded")
	}
}

// TestCodecKnowsEveryField fails when a field is added to what a record
// stores: the codec must learn it, or the field would be silently dropped
// by the Redis store.
func TestCodecKnowsEveryField(t *testing.T) {
	known := map[reflect.Type][]string{
		reflect.TypeOf(model.Evidence{}): {"ID", "Subject", "LegalisationID", "EvidenceKey", "Reference", "CommIDs", "ContactID",
			"ProjectID", "Origin", "RenewedAt", "CreatedAt", "CreatedBy", "SubjectOrigin"},
		reflect.TypeOf(model.Subject{}):    {"Ref", "Origin", "Parent"},
		reflect.TypeOf(cache.Applied{}):    {"Obliviated", "Round"},
		reflect.TypeOf(model.SubjectRef{}): {"Entity", "ID"},
	}
	for typ, fields := range known {
		var got []string
		for i := range typ.NumField() {
			got = append(got, typ.Field(i).Name)
		}
		if !reflect.DeepEqual(got, fields) {
			t.Errorf("%s has fields %v; the codec (codec.go) knows %v: teach it the new ones", typ, got, fields)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	sym := newTestSyms()
	ref := model.SubjectRef{Entity: "contact", ID: "c-1"}
	b, _ := encodeRecord(&record{score: 5, seen: t0, seenSrc: 1, children: []model.SubjectRef{ref},
		evidence: []model.Evidence{{ID: "ev-0123456789abcdef", LegalisationID: "l", CommIDs: []string{"a"}}}}, sym)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(ref, string(data), "", sym)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to a record that decodes the same.
		b, err := encodeRecord(r, sym)
		if err != nil {
			t.Fatal(err)
		}
		inline, overflow := splitRecord(b)
		r2, err := decodeRecord(ref, inline, overflow, sym)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoded record differs: %v\n%+v\n%+v", err, r, r2)
		}
	})
}

func TestTagNamesLandOnEvenlySpacedSlots(t *testing.T) {
	seen := map[string]bool{}
	for i, n := range tagNames {
		if seen[n] {
			t.Fatalf("tag %q used twice", n)
		}
		seen[n] = true
		if got, want := slotOf(tagPrefix[i]+"x"), 64*i+32; got != want {
			t.Fatalf("tag %d (%q) hashes to slot %d, want %d", i, n, got, want)
		}
	}
	// Subjects spread evenly over the tags.
	var count [numTags]int
	for i := range 256000 {
		p := subjectPlace(model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(i)}, defaultBuckets)
		count[p.tag]++
	}
	for tag, n := range count {
		if n < 800 || n > 1200 {
			t.Fatalf("tag %d holds %d of 256000 subjects, want about 1000", tag, n)
		}
	}
}

func TestScoresRoundTrip(t *testing.T) {
	for _, f := range []float64{cache.NoTransition, -1, -123456, 1, float64(t0.UnixMilli())} {
		b := make([]byte, scoreLen)
		putScore(b, scoreOf(f))
		if got := dueScore(readScore(b)); got != f {
			t.Fatalf("score %v stored as %v", f, got)
		}
	}
}

// TestRefListIsSubjectMembers: the invalidation message lists the
// subjects as length-prefixed cache.SubjectMember strings, and reads back
// as written.
func TestRefListIsSubjectMembers(t *testing.T) {
	refs := []model.SubjectRef{{Entity: "contact", ID: "c-1"}, {Entity: "phone_number", ID: "+33:1:2"}, {Entity: "e", ID: "x"}}
	var want string
	for _, r := range refs {
		m := cache.SubjectMember(r)
		want += strconv.Itoa(len(m)) + ":" + m
	}
	got := refList(refs)
	if got != want {
		t.Fatalf("refList = %q, want %q", got, want)
	}
	back, err := parseRefList(got)
	if err != nil || !slices.Equal(back, refs) {
		t.Fatalf("parseRefList = %v, %v; want %v", back, err, refs)
	}
}

// TestHashPartsIsFNV1a: the hand-written hash places subjects and keys
// exactly where hash/fnv's FNV-1a did (a different hash would move every
// stored subject).
func TestHashPartsIsFNV1a(t *testing.T) {
	ref := func(parts ...string) uint64 {
		h := fnv.New64a()
		var n [binary.MaxVarintLen64]byte
		for _, p := range parts {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
			h.Write([]byte(p))
		}
		return h.Sum64()
	}
	cases := [][]string{
		{"contact", "c-00000001"}, {"", ""}, {"k", "contract-care", "key:1"},
		{"a", strings.Repeat("x", 300)}, {"entity", "ü\x00\xff"},
	}
	for _, c := range cases {
		if got, want := hashParts(c...), ref(c...); got != want {
			t.Errorf("hashParts(%q) = %x, want %x", c, got, want)
		}
	}
}
