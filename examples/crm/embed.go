package crm

import _ "embed"

// RegistersYAML is registers.yaml: the scenario's registers, a subject per
// contact and the evidence rows, with times relative to load time. Parse it
// with model.ParseSeed(RegistersYAML, now) using the same now given to New.
//
//go:embed registers.yaml
var RegistersYAML []byte
