package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// scenarioFields is examples/crm/README.md's contact mapping under a list.
var scenarioFields = []FieldSpec{
	{Path: "data.#.customer_number", Bit: 0},
	{Path: "data.#.ip_address", Bit: 0, Action: ActHash},
	{Path: "data.#.first_name", Bit: 1},
	{Path: "data.#.last_name", Bit: 1},
	{Path: "data.#.email", Bit: 1, Action: ActMask},
	{Path: "data.#.phone", Bit: 1, Action: ActRemove},
	{Path: "data.#.address", Bit: 1},
	{Path: "data.#.birth_year", Bit: 2},
	{Path: "data.#.sex", Bit: 2},
	{Path: "data.#.income_category", Bit: 2},
	{Path: "data.#.health_notes", Bit: 3},
}

func benchMap(tb testing.TB) *Map {
	m, err := Compile(Spec{Fields: scenarioFields, SubjectPath: "data.#.id", HashKey: []byte("bench-key")})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// alternating gives even subjects the agent mask (bits 0-2) and odd ones the
// marketer mask (bits 0-1): about 6 fields are redacted per contact either way
// (health_notes, and for odd ones the three bit-2 fields too).
func alternating() Planner {
	return PlannerFunc(func(id []byte) (uint32, error) {
		if id[len(id)-1]&1 == 0 {
			return 0b0111, nil
		}
		return 0b0011, nil
	})
}

// listBody builds {"data":[n contacts],"page":1,"total":n}.
func listBody(n int) []byte {
	b := []byte(`{"data":[`)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":"c-%d","first_name":"Alice","last_name":"Nováková-%d","email":"alice.%d@example.com",`+
			`"phone":"+420 601 234 %03d","customer_number":"CN-%08d","ip_address":"10.%d.%d.%d","birth_year":%d,"sex":"f",`+
			`"income_category":"B","health_notes":"Allergic to penicillin; follow-up in \"May\".",`+
			`"address":{"street":"Dlouhá %d","city":"Praha","zip":"110 00","country":"CZ"},`+
			`"created_at":"2024-05-01T10:00:00Z","account_id":%d,"tags":["vip","newsletter"]}`,
			i, i, i, i%1000, i, i%256, (i/7)%256, (i/13)%256, 1950+i%50, i, 1000+i)
	}
	return append(b, `],"page":1,"total":`+strconv.Itoa(n)+`}`...)
}

// bodies holds list bodies of about 100 KB and 1 MB.
var bodies = []struct {
	name string
	n    int
}{{"100KB", 225}, {"1MB", 2300}}

func BenchmarkRewrite(b *testing.B) {
	m := benchMap(b)
	for _, bb := range bodies {
		body := listBody(bb.n)
		benchRewrite(b, bb.name, m, body, alternating())
	}
	// Every item hidden whole, as for the subjects gdprgate has no record
	// of (most of gdprgate-load's proxy list): 11 values replaced per item.
	// The fields take examples/crm's default action, null.
	nulls := make([]FieldSpec, len(scenarioFields))
	for i, f := range scenarioFields {
		f.Action = ActNull
		nulls[i] = f
	}
	mn, err := Compile(Spec{Fields: nulls, SubjectPath: "data.#.id"})
	if err != nil {
		b.Fatal(err)
	}
	benchRewrite(b, "1MB-hidden", mn, listBody(2300), Fixed(0))
}

func benchRewrite(b *testing.B, name string, m *Map, body []byte, p Planner) {
	b.Run(name, func(b *testing.B) {
		dst := make([]byte, 0, len(body))
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		cpu0 := processCPU()
		for b.Loop() {
			out, _, err := m.Rewrite(dst[:0], body, p)
			if err != nil {
				b.Fatal(err)
			}
			dst = out
		}
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	})
}

// BenchmarkRewriteBaseline measures plain validating scans of the same bytes.
func BenchmarkRewriteBaseline(b *testing.B) {
	for _, bb := range bodies {
		body := listBody(bb.n)
		b.Run("encoding-json-Valid/"+bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if !json.Valid(body) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run("jsontext-ReadToken/"+bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var dec jsontext.Decoder
			for b.Loop() {
				dec.Reset(bytes.NewReader(body))
				for {
					if _, err := dec.ReadToken(); err != nil {
						break
					}
				}
			}
		})
		b.Run("scanner/"+bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				s := scanner{src: body}
				if _, err := s.value(0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the process's user+system CPU time so far, in ns: on a
// shared machine CPU time per op stays comparable between runs when wall
// time does not.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
