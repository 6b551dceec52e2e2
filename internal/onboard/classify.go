package onboard

import (
	"strings"
	"unicode"
)

// Class is the kind of personal data a property holds, in the vocabulary of
// the example registers: each class becomes a sensitivity id through
// Options.Sensitivities.
type Class string

// The classes, from the least to the most sensitive.
const (
	Auxiliary   Class = "auxiliary"   // identifiers that point at a person: IP address, customer number
	Contact     Class = "contact"     // names, e-mail, phone, postal address
	Significant Class = "significant" // birth date, sex, income, national and bank identifiers
	Special     Class = "special"     // GDPR Art. 9 data: health, religion, ethnicity, …
)

// Confidence says how sure a proposal is.
type Confidence string

// Confidences: the name and the format agree (high), the name alone is
// clear (medium), a part of the name suggests it (low).
const (
	High   Confidence = "high"
	Medium Confidence = "medium"
	Low    Confidence = "low"
)

// verdict is one classification.
type verdict struct {
	class      Class
	confidence Confidence
	reason     string
}

// rule classifies a property by the words of its name. words are matched
// against the name's words as a contiguous run ("date of birth").
type rule struct {
	class      Class
	confidence Confidence
	what       string     // what the data is, for the reason
	words      [][]string // alternatives
	formats    []string   // formats that raise the confidence to high
	objectOK   bool       // an object with this name is the data as a whole
}

func w(s ...string) [][]string {
	out := make([][]string, len(s))
	for i, x := range s {
		out[i] = strings.Fields(x)
	}
	return out
}

// rules are tried in order: the most sensitive first, so that
// "health_contact_phone" is not mistaken for plain contact data.
var rules = []rule{
	{Special, Medium, "health data (GDPR Art. 9)", w("health", "medical", "diagnosis", "diagnoses", "allergy", "allergies", "disability", "medication", "illness", "symptom", "blood type", "treatment", "prescription"), nil, true},
	{Special, Medium, "religion, ethnicity, politics, union membership, sex life, biometric or genetic data (GDPR Art. 9)", w("religion", "religious", "ethnicity", "ethnic", "race", "political", "trade union", "union membership", "sexual orientation", "biometric", "genetic", "fingerprint"), nil, true},
	{Significant, Medium, "birth date", w("birth date", "date of birth", "dob", "birthday", "birth year", "year of birth", "birthdate"), []string{"date", "date-time"}, false},
	{Significant, Medium, "age", w("age"), []string{"int32", "int64", "integer"}, false},
	{Significant, Medium, "sex or gender", w("gender", "sex"), nil, false},
	{Significant, Medium, "income", w("income", "salary", "wage", "income category"), nil, false},
	{Significant, Medium, "nationality or marital status", w("nationality", "citizenship", "marital status"), nil, false},
	{Significant, Medium, "bank account (IBAN)", w("iban"), []string{"iban"}, false},
	{Significant, Medium, "bank or card number", w("bic", "swift", "bank account", "account number", "card number", "credit card", "pan"), nil, false},
	{Significant, Medium, "national identifier", w("ssn", "social security", "national id", "personal id", "passport", "driver license", "driving licence", "tax id", "personal number", "birth number"), nil, false},
	{Auxiliary, Medium, "IP address", w("ip", "ip address", "ipv4", "ipv6", "remote addr"), []string{"ipv4", "ipv6", "ip"}, false},
	{Auxiliary, Medium, "device or browser identifier", w("user agent", "device id", "mac address", "cookie id", "advertising id"), nil, false},
	{Contact, Medium, "e-mail address", w("email", "e mail", "mail", "email address"), []string{"email", "idn-email"}, false},
	{Contact, Medium, "phone number", w("phone", "mobile", "telephone", "tel", "fax", "msisdn", "cell", "phone number"), []string{"phone", "tel", "e164"}, false},
	{Contact, Medium, "a person's name", w("first name", "last name", "given name", "family name", "surname", "full name", "middle name", "maiden name", "firstname", "lastname", "fullname", "nickname"), nil, false},
	{Contact, Medium, "postal address", w("address", "street", "address line", "city", "town", "zip", "zipcode", "postcode", "postal code", "post code"), nil, true},
	{Auxiliary, Medium, "customer or member number", w("customer number", "customer no", "client number", "member number", "loyalty number", "customer id number"), nil, false},
	{Auxiliary, Low, "location", w("latitude", "longitude", "geo", "geolocation", "coordinates"), nil, true},
}

// personWords name data subjects: a schema or path segment with such a name
// holds a person's data, and "<word>_id" points at one.
var personWords = map[string]bool{
	"contact": true, "customer": true, "person": true, "people": true, "user": true, "client": true,
	"patient": true, "member": true, "employee": true, "requester": true, "reporter": true,
	"lead": true, "subscriber": true, "applicant": true, "candidate": true, "author": true,
	"assignee": true, "owner": true, "caller": true, "recipient": true, "student": true,
}

// classify proposes a class for a property. person says whether the object
// that holds it describes a person (a bare "name" is then a person's name).
func classify(name, format string, isObject, person bool) (verdict, bool) {
	words := splitWords(name)
	joined := strings.Join(words, " ")
	format = strings.ToLower(format)
	// A format alone is enough for a few.
	switch format {
	case "email", "idn-email":
		return verdict{Contact, High, "format " + format + ": an e-mail address"}, true
	case "ipv4", "ipv6":
		return verdict{Auxiliary, High, "format " + format + ": an IP address"}, true
	}
	for _, r := range rules {
		if isObject && !r.objectOK {
			continue
		}
		for _, alt := range r.words {
			pos := indexRun(words, alt)
			if pos < 0 {
				continue
			}
			v := verdict{r.class, r.confidence, ""}
			whole := len(alt) == len(words)
			switch {
			case containsFold(r.formats, format) && format != "":
				v.confidence = High
				v.reason = "name and format " + format + ": " + r.what
			case whole:
				v.reason = "name: " + r.what
			default:
				// One word of a longer name: weaker, unless the other words
				// only say which one ("home_phone", "reporter_email").
				v.reason = "name contains \"" + strings.Join(alt, " ") + "\": " + r.what
				if len(words)-len(alt) > 1 {
					v.confidence = Low
				}
			}
			if isObject {
				v.reason += " (the whole object)"
			}
			return v, true
		}
	}
	if person && !isObject && (joined == "name" || joined == "display name") {
		return verdict{Contact, Medium, "a person's name (\"" + name + "\" of a person)"}, true
	}
	return verdict{}, false
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// indexRun finds run as contiguous words of words, or -1.
func indexRun(words, run []string) int {
	for i := 0; i+len(run) <= len(words); i++ {
		ok := true
		for j := range run {
			if words[i+j] != run[j] && words[i+j] != run[j]+"s" {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

// splitWords splits camelCase, snake_case, kebab-case and dotted names into
// lower-case words: "dateOfBirth" → date of birth, "IPAddress" → ip address.
func splitWords(s string) []string {
	var words []string
	var cur []rune
	rs := []rune(s)
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for i, r := range rs {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
		case unicode.IsUpper(r):
			// A new word starts at an upper-case letter after a lower-case
			// one, or before a lower-case one in an acronym ("IPAddress").
			if i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]) ||
				unicode.IsUpper(rs[i-1]) && i+1 < len(rs) && unicode.IsLower(rs[i+1])) {
				flush()
			}
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
	}
	flush()
	return words
}

// singular turns a collection's name into an entity's: contacts → contact,
// people → person, addresses → address, categories → category.
func singular(s string) string {
	s = strings.ToLower(s)
	switch {
	case s == "people":
		return "person"
	case strings.HasSuffix(s, "ies") && len(s) > 4:
		return s[:len(s)-3] + "y"
	case strings.HasSuffix(s, "sses"), strings.HasSuffix(s, "shes"), strings.HasSuffix(s, "ches"), strings.HasSuffix(s, "xes"):
		return s[:len(s)-2]
	case strings.HasSuffix(s, "s") && !strings.HasSuffix(s, "ss") && len(s) > 3:
		return s[:len(s)-1]
	}
	return s
}
