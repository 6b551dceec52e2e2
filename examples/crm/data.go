package crm

import (
	"fmt"
	"strings"
	"time"
)

// Contact is a CRM contact record as the backend serves it. Field names are
// the scenario's; none of them knows anything about GDPR.
type Contact struct {
	ID             string   `json:"id"`
	FirstName      string   `json:"first_name"`
	LastName       string   `json:"last_name"`
	Email          string   `json:"email"`
	Phone          string   `json:"phone"`
	CustomerNumber string   `json:"customer_number"`
	IPAddress      string   `json:"ip_address"`
	BirthYear      int      `json:"birth_year"`
	Sex            string   `json:"sex"`
	IncomeCategory string   `json:"income_category"`
	HealthNotes    string   `json:"health_notes"`
	Address        Address  `json:"address"`
	CreatedAt      string   `json:"created_at"`
	AccountID      string   `json:"account_id"`
	Tags           []string `json:"tags"`
}

// Address is a contact's postal address.
type Address struct {
	Street  string `json:"street"`
	City    string `json:"city"`
	Zip     string `json:"zip"`
	Country string `json:"country"`
}

// Call is one phone call with a contact.
type Call struct {
	ID        string `json:"id"`
	ContactID string `json:"contact_id"`
	Direction string `json:"direction"`
	Phone     string `json:"phone"`
	StartedAt string `json:"started_at"`
	DurationS int    `json:"duration_s"`
	Notes     string `json:"notes"`
	// Topic and IsRenewal are set on calls logged through POST /api/calls
	// (the agent's topic of the call, and whether the customer renewed a
	// consent on it).
	Topic     string `json:"topic,omitempty"`
	IsRenewal bool   `json:"is_renewal,omitempty"`
}

// Issue is a support ticket raised about a contact.
type Issue struct {
	ID            string `json:"id"`
	ContactID     string `json:"contact_id"`
	Subject       string `json:"subject"`
	Body          string `json:"body"`
	ReporterEmail string `json:"reporter_email"`
	Status        string `json:"status"`
}

// ContactAges gives each contact's created_at as days before now. The
// registers file (registers.yaml) uses the same offsets for the subjects'
// origins; the tests check that the two agree.
var ContactAges = map[string]int{
	"c-1": 100, "c-2": 500, "c-3": 380, "c-4": 10, "c-5": 2000, "c-6": 300, "c-7": 60,
	"c-8": 40, "c-9": 250, "c-10": 800, "c-11": 200, "c-12": 900, "c-13": 20, "c-14": 120,
}

// ContactIDs lists the data set's contacts in list order.
var ContactIDs = []string{
	"c-1", "c-2", "c-3", "c-4", "c-5", "c-6", "c-7",
	"c-8", "c-9", "c-10", "c-11", "c-12", "c-13", "c-14",
}

type person struct {
	id, first, last, sex, income, health, street, city, zip, country, account string
	birth                                                                     int
	tags                                                                      []string
}

// people is the fixed data set. Every contact carries data of every
// sensitivity (including health notes) so that each redaction case shows.
var people = []person{
	{"c-1", "Alice", "Archer", "F", "B", "Allergic to penicillin.", "1 Elm Street", "Berlin", "10115", "DE", "acc-1", 1985, []string{"vip"}},
	{"c-2", "Bob", "Baker", "M", "C", "Knee surgery 2021.", "2 Oak Road", "Hamburg", "20095", "DE", "acc-1", 1972, []string{"legacy"}},
	{"c-3", "Carol", "Cooper", "F", "A", "Asthma.", "3 Pine Lane", "Munich", "80331", "DE", "acc-2", 1990, []string{"newsletter"}},
	{"c-4", "Dan", "Dalton", "M", "B", "Diabetes type 2.", "4 Birch Way", "Cologne", "50667", "DE", "acc-2", 1988, []string{"lead"}},
	{"c-5", "Eve", "Evans", "F", "D", "Hypertension.", "5 Cedar Court", "Vienna", "1010", "AT", "acc-3", 1960, []string{}},
	{"c-6", "Frank", "Fischer", "M", "C", "Back pain.", "6 Maple Drive", "Zurich", "8001", "CH", "acc-3", 1979, []string{"partner"}},
	{"c-7", "Grace", "Green", "F", "A", "Migraine.", "7 Willow Street", "Paris", "75001", "FR", "acc-4", 1995, []string{"wipe-me"}},
	{"c-8", "Heidi", "Hahn", "F", "B", "None known.", "8 Ash Avenue", "Leipzig", "04109", "DE", "acc-4", 1983, []string{}},
	{"c-9", "Ivan", "Ivanov", "M", "C", "Hearing aid.", "9 Spruce Road", "Prague", "11000", "CZ", "acc-5", 1970, []string{}},
	{"c-10", "Judy", "Jones", "F", "B", "Pregnant (2025).", "10 Poplar Place", "Dublin", "D01", "IE", "acc-5", 1992, []string{"newsletter"}},
	{"c-11", "Ken", "Kowalski", "M", "A", "Post-operative check due.", "11 Alder Row", "Warsaw", "00-001", "PL", "acc-6", 1965, []string{"patient"}},
	{"c-12", "Laura", "Lopez", "F", "C", "Lactose intolerant.", "12 Larch Close", "Madrid", "28001", "ES", "acc-6", 1987, []string{"renewed"}},
	{"c-13", "Mallory", "Meyer", "F", "B", "Physiotherapy weekly.", "13 Rowan Road", "Bremen", "28195", "DE", "acc-7", 1999, []string{"patient"}},
	{"c-14", "Niaj", "Nowak", "M", "D", "Colour blind.", "14 Hazel Hill", "Krakow", "30-001", "PL", "acc-7", 1975, []string{"vip", "newsletter"}},
}

func at(now time.Time, days int, extra time.Duration) string {
	return now.Add(-time.Duration(days)*24*time.Hour + extra).UTC().Format(time.RFC3339)
}

// seedData builds the deterministic data set relative to now.
func seedData(now time.Time) ([]Contact, []Call, []Issue) {
	contacts := make([]Contact, 0, len(people))
	for i, p := range people {
		n := i + 1
		contacts = append(contacts, Contact{
			ID:             p.id,
			FirstName:      p.first,
			LastName:       p.last,
			Email:          fmt.Sprintf("%s.%s@example.com", strings.ToLower(p.first), strings.ToLower(p.last)),
			Phone:          fmt.Sprintf("+4930123450%02d", n),
			CustomerNumber: fmt.Sprintf("CN-%05d", 10000+n),
			IPAddress:      fmt.Sprintf("192.0.2.%d", n),
			BirthYear:      p.birth,
			Sex:            p.sex,
			IncomeCategory: p.income,
			HealthNotes:    p.health,
			Address:        Address{Street: p.street, City: p.city, Zip: p.zip, Country: p.country},
			CreatedAt:      at(now, ContactAges[p.id], 0),
			AccountID:      p.account,
			Tags:           append([]string{}, p.tags...),
		})
	}
	phone := func(id string) string {
		for _, c := range contacts {
			if c.ID == id {
				return c.Phone
			}
		}
		return ""
	}
	calls := []Call{
		{"call-1", "c-1", "inbound", phone("c-1"), at(now, 90, 10*time.Hour), 312, "Asked about invoice; mentioned penicillin allergy.", "", false},
		{"call-2", "c-1", "outbound", phone("c-1"), at(now, 40, 14*time.Hour), 95, "Callback: invoice corrected.", "", false},
		{"call-3", "c-1", "inbound", phone("c-1"), at(now, 5, 9*time.Hour), 48, "Address change.", "", false},
		{"call-4", "c-2", "inbound", phone("c-2"), at(now, 480, 11*time.Hour), 600, "Complaint after knee surgery delay.", "", false},
		{"call-5", "c-2", "outbound", phone("c-2"), at(now, 400, 16*time.Hour), 120, "Follow-up on complaint.", "", false},
		{"call-6", "c-7", "inbound", phone("c-7"), at(now, 55, 8*time.Hour), 200, "Migraine, asked to be called later.", "", false},
		{"call-7", "c-7", "outbound", phone("c-7"), at(now, 54, 15*time.Hour), 75, "Callback as requested.", "", false},
		{"call-8", "c-7", "inbound", phone("c-7"), at(now, 20, 13*time.Hour), 410, "Requested erasure of all data.", "", false},
		{"call-9", "c-11", "outbound", phone("c-11"), at(now, 100, 10*time.Hour), 180, "Post-operative check scheduled.", "", false},
	}
	issues := []Issue{
		{"i-1", "c-1", "Wrong invoice", "Contact c-1 was billed twice in March.", "alice.archer@example.com", "closed"},
		{"i-2", "c-1", "Address update", "Contact c-1 moved; update the postal address.", "alice.archer@example.com", "open"},
		{"i-3", "c-2", "Delivery delayed", "Contact c-2 reports a delayed delivery.", "bob.baker@example.com", "closed"},
		{"i-4", "c-7", "Erasure request", "Contact c-7 asks for erasure of all personal data.", "grace.green@example.com", "open"},
		{"i-5", "c-7", "Callback", "Contact c-7 wants a callback after 5 pm.", "grace.green@example.com", "closed"},
	}
	return contacts, calls, issues
}
