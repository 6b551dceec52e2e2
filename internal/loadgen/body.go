package loadgen

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strconv"
)

// Bodies in the reference CRM's shape (examples/crm): the contact-list
// route answers {"data":[contacts],"page":1}, the contact route one
// contact. They are generated, not read, so that a run can ask for any size
// — up to a list of a gigabyte streamed without ever being held.

// ListHead and ListTail frame a generated list body.
const (
	ListHead = `{"data":[`
	ListTail = `],"page":1}`
)

// AppendContact appends the JSON of contact number i (id "c-<i>"): about
// 450 bytes, with every mapped field of the CRM's route map, an escaped
// quote and non-ASCII text.
func AppendContact(b []byte, i int) []byte {
	b = append(b, `{"id":"c-`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `","first_name":"Alice","last_name":"Nováková-`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `","email":"alice.`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = fmt.Appendf(b, `@example.com","phone":"+420 601 234 %03d","customer_number":"CN-%08d","ip_address":"10.%d.%d.%d",`,
		i%1000, i, i%256, (i/7)%256, (i/13)%256)
	b = fmt.Appendf(b, `"birth_year":%d,"sex":"f","income_category":"B","health_notes":"Allergic to penicillin; follow-up in \"May\".",`, 1950+i%50)
	b = fmt.Appendf(b, `"address":{"street":"Dlouhá %d","city":"Praha","zip":"110 00","country":"CZ"},`, i)
	b = fmt.Appendf(b, `"created_at":"2024-05-01T10:00:00Z","account_id":%d,"tags":["vip","newsletter"]}`, 1000+i)
	return b
}

// ListBody returns a contact list of about size bytes (at least one
// contact), every contact a distinct subject.
func ListBody(size int) []byte {
	b := make([]byte, 0, size+1024)
	b = append(b, ListHead...)
	for i := 0; ; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendContact(b, i)
		if len(b)+len(ListTail) >= size {
			break
		}
	}
	return append(b, ListTail...)
}

// PeriodicBlock is Q, the repeating part of a periodic list: contacts 0 to
// period-1 joined by commas.
func PeriodicBlock(period int) []byte {
	var b []byte
	for i := range period {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendContact(b, i)
	}
	return b
}

// PeriodicSize is the length of a periodic list of k blocks of len(q).
func PeriodicSize(blockLen int, k int64) int64 {
	return int64(len(ListHead)+len(ListTail)) + k*int64(blockLen) + (k - 1)
}

// WritePeriodic writes the periodic list H + Q + (","+Q)×(k-1) + T, k >= 1,
// to w in chunks of about chunk bytes, holding only q. Every block repeats
// the same subjects, so a redactor gives each block the same output Q' and
// the whole answer is H + Q' + (","+Q')×(k-1) + T: what VerifyPeriodic
// checks a streamed answer against.
func WritePeriodic(w io.Writer, q []byte, k int64, chunk int) error {
	if k < 1 {
		return fmt.Errorf("a periodic list needs at least one block (got %d)", k)
	}
	bw := bufio.NewWriterSize(w, max(chunk, 4096))
	if _, err := bw.WriteString(ListHead); err != nil {
		return err
	}
	for n := range k {
		if n > 0 {
			if err := bw.WriteByte(','); err != nil {
				return err
			}
		}
		if _, err := bw.Write(q); err != nil {
			return err
		}
	}
	if _, err := bw.WriteString(ListTail); err != nil {
		return err
	}
	return bw.Flush()
}

// PeriodicExpectation is what a redacted periodic list must be, learnt from
// the redactor's answers for one and two blocks.
type PeriodicExpectation struct {
	Head, Block, Tail []byte
}

// LearnPeriodic derives the expectation from out1 and out2, the redacted
// answers for k=1 and k=2: out1 = H+Q'+T fixes Q', and out2 must then be
// H+Q'+","+Q'+T — the check that each block is redacted on its own (the
// subjects' masks do not depend on where they appear).
func LearnPeriodic(out1, out2 []byte) (PeriodicExpectation, error) {
	h, t := []byte(ListHead), []byte(ListTail)
	if len(out1) < len(h)+len(t) || string(out1[:len(h)]) != ListHead || string(out1[len(out1)-len(t):]) != ListTail {
		return PeriodicExpectation{}, fmt.Errorf("one-block answer is not a list: %.80q", out1)
	}
	e := PeriodicExpectation{Head: h, Tail: t, Block: out1[len(h) : len(out1)-len(t)]}
	want := e.Expected(2)
	if string(want) != string(out2) {
		return PeriodicExpectation{}, fmt.Errorf("two-block answer (%d bytes) is not the one-block answer's block twice (%d bytes)", len(out2), len(want))
	}
	return e, nil
}

// Expected is the whole answer for k blocks (small k only: it is built in
// memory).
func (e PeriodicExpectation) Expected(k int64) []byte {
	b := append([]byte(nil), e.Head...)
	for n := range k {
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, e.Block...)
	}
	return append(b, e.Tail...)
}

// Verifier checks a streamed answer for k blocks as it arrives, holding
// nothing: Write compares each byte with the expected one.
type Verifier struct {
	e     PeriodicExpectation
	k     int64
	block int64 // blocks completed
	part  int   // 0 head, 1 comma, 2 block, 3 tail, 4 done
	off   int   // offset in the current part
	n     int64 // bytes compared
	err   error
}

// NewVerifier returns a verifier for k blocks.
func (e PeriodicExpectation) NewVerifier(k int64) *Verifier { return &Verifier{e: e, k: k} }

func (v *Verifier) current() []byte {
	switch v.part {
	case 0:
		return v.e.Head
	case 1:
		return []byte{','}
	case 2:
		return v.e.Block
	case 3:
		return v.e.Tail
	}
	return nil
}

func (v *Verifier) next() {
	v.off = 0
	switch v.part {
	case 0, 1:
		v.part = 2
	case 2:
		v.block++
		if v.block < v.k {
			v.part = 1
		} else {
			v.part = 3
		}
	case 3:
		v.part = 4
	}
}

// Write implements io.Writer; the first mismatch is kept and returned.
func (v *Verifier) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	total := len(p)
	for len(p) > 0 {
		cur := v.current()
		if cur == nil {
			v.err = fmt.Errorf("answer longer than expected: %d bytes after the end at offset %d", len(p), v.n)
			return 0, v.err
		}
		n := min(len(p), len(cur)-v.off)
		if string(p[:n]) != string(cur[v.off:v.off+n]) {
			for i := range n {
				if p[i] != cur[v.off+i] {
					v.err = fmt.Errorf("answer differs from the buffered rewrite at offset %d", v.n+int64(i))
					return 0, v.err
				}
			}
		}
		p = p[n:]
		v.off += n
		v.n += int64(n)
		if v.off == len(cur) {
			v.next()
		}
	}
	return total, nil
}

// Done reports whether exactly the whole expected answer was written.
func (v *Verifier) Done() error {
	if v.err != nil {
		return v.err
	}
	if v.part != 4 {
		return fmt.Errorf("answer shorter than expected: it ends after %d bytes", v.n)
	}
	return nil
}

// Bytes is how many bytes were compared.
func (v *Verifier) Bytes() int64 { return v.n }

// SHA256 is the hex sha256 of the expected answer for k blocks, hashed as
// it is generated (never held).
func (e PeriodicExpectation) SHA256(k int64) string {
	h := sha256.New()
	h.Write(e.Head)
	for n := range k {
		if n > 0 {
			h.Write([]byte{','})
		}
		h.Write(e.Block)
	}
	h.Write(e.Tail)
	return hex.EncodeToString(h.Sum(nil))
}

// HashVerifier is a Verifier that also hashes what it is given and, at
// Done, compares the sha256 with want and writes both to log.
type HashVerifier struct {
	*Verifier
	h    hash.Hash
	want string
	log  io.Writer
}

// NewHashVerifier returns a verifier for k blocks whose whole answer must
// hash to want.
func (e PeriodicExpectation) NewHashVerifier(k int64, want string, log io.Writer) *HashVerifier {
	return &HashVerifier{Verifier: e.NewVerifier(k), h: sha256.New(), want: want, log: log}
}

func (v *HashVerifier) Write(p []byte) (int, error) {
	v.h.Write(p)
	return v.Verifier.Write(p)
}

// Done checks the answer was whole and hashes as expected.
func (v *HashVerifier) Done() error {
	got := hex.EncodeToString(v.h.Sum(nil))
	if v.log != nil {
		fmt.Fprintf(v.log, "answer sha256 %s (%d bytes), buffered rewrite's %s\n", got, v.n, v.want)
	}
	if err := v.Verifier.Done(); err != nil {
		return err
	}
	if got != v.want {
		return fmt.Errorf("answer sha256 %s, buffered rewrite's %s", got, v.want)
	}
	return nil
}
