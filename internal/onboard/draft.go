package onboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// YAML writes the draft as a --config route map, each decision explained in
// a comment next to it.
func (d *Draft) YAML(sens map[Class]string) []byte {
	var b bytes.Buffer
	title := d.Title
	if title == "" {
		title = "the API"
	}
	fmt.Fprintf(&b, "# Draft route map for %s", strings.TrimSpace(title+" "+d.Version))
	if d.Format != "" {
		fmt.Fprintf(&b, " (%s", d.Format)
		if d.Source != "" {
			fmt.Fprintf(&b, ", %s", d.Source)
		}
		b.WriteString(")")
	}
	b.WriteString(`, written by gdprgate routes suggest.
# A draft, not a decision: review every route, subject and field, then run
# gdprgate routes check. Each field's comment gives the reason and a
# confidence: high (name and format agree), medium (the name is clear), low
# (a part of the name suggests it). Properties no rule classified are listed
# under each route for a person to decide.
`)
	fmt.Fprintf(&b, "# Sensitivities: %s.\n", classLegend(sens))
	for _, wn := range d.Warnings {
		fmt.Fprintf(&b, "# Warning: %s\n", wn)
	}
	if len(d.Routes) == 0 {
		b.WriteString("routes: []\n")
	} else {
		b.WriteString("routes:\n")
	}
	for _, r := range d.Routes {
		b.WriteString("\n")
		fmt.Fprintf(&b, "  - name: %s\n", q(r.Name))
		fmt.Fprintf(&b, "    method: %s\n", r.Method)
		fmt.Fprintf(&b, "    path: %s\n", q(r.Path))
		fmt.Fprintf(&b, "    kind: %s%s\n", r.Kind, comment(r.KindReason))
		if r.CommType != "" {
			fmt.Fprintf(&b, "    comm_type: %s%s\n", r.CommType, comment(r.CommReason))
		}
		if r.CommTypeFrom != "" {
			fmt.Fprintf(&b, "    comm_type_from: %s%s\n", q(r.CommTypeFrom), comment(r.CommReason))
			b.WriteString("    comm_types:\n")
			for _, k := range sortedKeys(r.CommTypes) {
				fmt.Fprintf(&b, "      %s: %s\n", q(k), r.CommTypes[k])
			}
		}
		if s := r.Subject; s != nil {
			fmt.Fprintf(&b, "    subject:%s\n", comment(s.Reason))
			fmt.Fprintf(&b, "      entity: %s\n", q(s.Entity))
			fmt.Fprintf(&b, "      from: %s\n", s.From)
			if s.Name != "" {
				fmt.Fprintf(&b, "      name: %s\n", q(s.Name))
			}
			if s.Path != "" {
				fmt.Fprintf(&b, "      path: %s\n", q(s.Path))
			}
			if s.Confirm != "" {
				fmt.Fprintf(&b, "      confirm: %s\n", q(s.Confirm))
			}
		}
		if len(r.Fields) > 0 {
			b.WriteString("    fields:\n")
			fields := append([]Field(nil), r.Fields...)
			sort.SliceStable(fields, func(i, j int) bool { return fields[i].Path < fields[j].Path })
			for _, f := range fields {
				fmt.Fprintf(&b, "      %s: %s%s\n", q(f.Path), q(f.Sensitivity), comment(fmt.Sprintf("%s (%s)", f.Reason, f.Confidence)))
			}
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "    # Note: %s\n", n)
		}
		if len(r.Unclassified) > 0 {
			b.WriteString("    # Not classified — decide for each (add it under fields, or leave it out):\n")
			for _, line := range wrap(strings.Join(r.Unclassified, ", "), 88) {
				fmt.Fprintf(&b, "    #   %s\n", line)
			}
		}
	}
	if len(d.Deletes) > 0 {
		b.WriteString("\n# DELETE routes: candidates for the wipe steps that delete a subject and\n# everything related (wipes.steps.<entity>: [{name, method: DELETE, path}]):\n")
		for _, del := range d.Deletes {
			fmt.Fprintf(&b, "#   %s\n", del)
		}
	}
	if len(d.Skipped) > 0 {
		b.WriteString("\n# Left out:\n")
		for _, s := range d.Skipped {
			fmt.Fprintf(&b, "#   %s\n", s)
		}
	}
	return b.Bytes()
}

func classLegend(sens map[Class]string) string {
	var parts []string
	for _, c := range []Class{Auxiliary, Contact, Significant, Special} {
		id := sens[c]
		if id == "" {
			id = DefaultSensitivities[c]
		}
		desc := map[Class]string{
			Auxiliary:   "identifiers pointing at a person",
			Contact:     "names, e-mail, phone, address",
			Significant: "birth date, sex, income, bank and national ids",
			Special:     "Art. 9 data: health, religion, ethnicity",
		}[c]
		parts = append(parts, fmt.Sprintf("%s = %s", id, desc))
	}
	return strings.Join(parts, "; ")
}

func comment(s string) string {
	if s == "" {
		return ""
	}
	return "   # " + strings.ReplaceAll(s, "\n", " ")
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var plain = regexp.MustCompile(`^[A-Za-z0-9_/][A-Za-z0-9_./#{}-]*$`)

// q writes s as a YAML scalar: plain when that reads back as the same
// string, double-quoted otherwise.
func q(s string) string {
	switch strings.ToLower(s) {
	case "", "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~":
		return jsonString(s)
	}
	if plain.MatchString(s) && !looksNumeric(s) {
		return s
	}
	return jsonString(s)
}

func looksNumeric(s string) bool {
	var f float64
	_, err := fmt.Sscanf(s, "%g", &f)
	return err == nil && strings.Trim(s, "0123456789.eE+-_") == ""
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// wrap splits text into lines of at most width characters at ", ".
func wrap(text string, width int) []string {
	var lines []string
	cur := ""
	for _, part := range strings.Split(text, ", ") {
		switch {
		case cur == "":
			cur = part
		case len(cur)+2+len(part) > width:
			lines = append(lines, cur+",")
			cur = part
		default:
			cur += ", " + part
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
