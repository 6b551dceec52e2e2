package adminapi

import (
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/policy/model"
)

// schemaTypes are the request-body schemas named in the route table and a
// few answers, generated from the Go types so they cannot drift from them.
var schemaTypes = map[string]reflect.Type{
	"Sensitivity":             reflect.TypeFor[model.Sensitivity](),
	"Category":                reflect.TypeFor[model.Category](),
	"Purpose":                 reflect.TypeFor[model.Purpose](),
	"Legalisation":            reflect.TypeFor[legalisationView](),
	"Rule":                    reflect.TypeFor[model.Rule](),
	"Role":                    reflect.TypeFor[model.Role](),
	"Config":                  reflect.TypeFor[model.Config](),
	"Registers":               reflect.TypeFor[model.Registers](),
	"EvidenceInput":           reflect.TypeFor[evidenceInput](),
	"SubjectInput":            reflect.TypeFor[subjectInput](),
	"CommunicationAttributes": reflect.TypeFor[commAttributes](),
	"WipeRequest":             reflect.TypeFor[wipeRequest](),
	"Wipe":                    reflect.TypeFor[cache.WipeRecord](),
	"AuditEntry":              reflect.TypeFor[audit.Entry](),
	"SubjectState":            reflect.TypeFor[subjectView](),
	"Whoami":                  reflect.TypeFor[whoami](),
	"Error":                   reflect.TypeFor[apiError](),
	// The lifecycle executor's documents (held deletions, due report).
	"DeletionDecision": reflect.TypeFor[decisionInput](),
	"DeletionBulk":     reflect.TypeFor[decisionInput](),
	"Deletion":         reflect.TypeFor[deletionView](),
	"DeletionList":     reflect.TypeFor[deletionList](),
	"Decisions":        reflect.TypeFor[decisionsAnswer](),
	"DecisionPreview":  reflect.TypeFor[decisionPreview](),
	"DueReport":        reflect.TypeFor[dueReport](),
	"ChangePreview":    reflect.TypeFor[changePreviewAnswer](),
	"LifecycleStatus":  reflect.TypeFor[lifecycleStatus](),
}

// Answer shapes documented in the OpenAPI document (the handlers write the
// same members).
type (
	deletionList struct {
		Deletions []deletionView `json:"deletions"`
		Count     int            `json:"count"`
	}
	decisionsAnswer struct {
		Decisions []forget.Decision `json:"decisions"`
		Decided   int               `json:"decided,omitempty"`
		Deletion  *cache.WipeRecord `json:"deletion,omitempty"`
	}
	dueReport struct {
		At           time.Time           `json:"at"`
		Until        time.Time           `json:"until"`
		Within       string              `json:"within"`
		GdprEnforced bool                `json:"gdpr_enforced"`
		Deletions    string              `json:"deletions"`
		Subjects     []forget.DueSubject `json:"subjects"`
		Truncated    bool                `json:"truncated"`
	}
	changePreviewAnswer struct {
		DryRun                bool                 `json:"dry_run"`
		Version               int64                `json:"version"`
		Preview               forget.ChangePreview `json:"preview"`
		MaxDeletionsPerChange int                  `json:"max_deletions_per_change"`
		NeedsConfirm          bool                 `json:"needs_confirm"`
	}
	lifecycleStatus struct {
		Deletions             string `json:"deletions"`
		MaxDeletionsPerChange int    `json:"max_deletions_per_change"`
		IndexedSubjects       int    `json:"indexed_subjects"`
		DueSubjects           int    `json:"due_subjects"`
		HeldDeletions         int    `json:"held_deletions"`
		Recompute             struct {
			Version  int64     `json:"version"`
			Scanned  int64     `json:"scanned"`
			Done     bool      `json:"done"`
			Started  time.Time `json:"started"`
			Finished time.Time `json:"finished,omitzero"`
			Progress float64   `json:"progress,omitempty"`
		} `json:"recompute"`
	}
)

type queryParam struct{ name, typ, desc string }

// queryParams documents the query parameters of routes, by "METHOD path".
var queryParams = map[string][]queryParam{
	"GET /v1/deletions": {
		{"state", "string", "held, queued, running, done, failed, rejected, not_executable, suspended or cancelled"},
		{"kind", "string", "wipe, erasure or purge"}, {"limit", "integer", "1..10000, default 100"},
	},
	"GET /v1/reports/due": {
		{"within", "string", "the window: days (7d) or a duration (36h); default 7d, at most 366d"},
		{"limit", "integer", "subjects read from the due index, 1..10000, default 1000"},
	},
	"POST /v1/wipes": {{"dry_run", "boolean", "list the wipes (with the cascade) without queuing them"}},
	"GET /v1/audit": {
		{"after", "string", "continue after this entry id (the previous answer's next)"},
		{"limit", "integer", "1..1000, default 100"},
		{"format", "string", "ndjson: stream every matching entry as NDJSON (also Accept: application/x-ndjson)"},
		{"actor", "string", "entries by this actor (a token's name, \"system\", …)"},
		{"action", "string", "entries with this action; a value ending in \".\" (\"wipe.\") is a prefix"},
		{"entity", "string", "with id: entries about this subject (matched by its keyed hash; the trail never holds ids in clear)"},
		{"id", "string", "with entity: see entity"},
		{"subject", "string", "entries about the subject with this keyed hash (\"h:…\")"},
		{"since", "string", "entries at or after this RFC 3339 time"},
		{"until", "string", "entries at or before this RFC 3339 time"},
	},
	"PUT /v1/subjects/{entity}/{id}":                  {{"dry_run", "boolean", "answer 200 with what the change does to the subject now (ChangePreview: its bits changing state, the deletions the sweeper would create) and change nothing"}},
	"DELETE /v1/evidence/{entity}/{id}/{evidence_id}": {{"dry_run", "boolean", "answer 200 with what the revocation does now to the subject and the subjects inheriting its evidence (ChangePreview) and change nothing"}},
	"POST /v1/deletions/{id}/approve":                 {decisionDryRun},
	"POST /v1/deletions/{id}/reject":                  {decisionDryRun},
	"POST /v1/deletions:approve":                      {decisionDryRun},
	"POST /v1/deletions:reject":                       {decisionDryRun},
}

// decisionDryRun previews an approval or rejection.
var decisionDryRun = queryParam{"dry_run", "boolean", "answer 200 with the decision's preview (DecisionPreview: the status each deletion would get, its steps, what the mass-deletion guard would count) and decide nothing"}

// registerWriteParams are accepted by every register write.
var registerWriteParams = []queryParam{
	{"dry_run", "boolean", "answer 200 with the change's preview (ChangePreview: subjects changing state per sensitivity, deletions it would create) and change nothing"},
	{"confirm", "boolean", "apply a change creating more deletions than lifecycle.max_deletions_per_change (refused with 409 confirmation_required otherwise)"},
}

// answerSchemas documents the 200 answer of routes, by "METHOD path".
var answerSchemas = map[string]string{
	"GET /v1/deletions":               "DeletionList",
	"GET /v1/deletions/{id}":          "Wipe",
	"POST /v1/deletions/{id}/approve": "Decisions",
	"POST /v1/deletions/{id}/reject":  "Decisions",
	"POST /v1/deletions:approve":      "Decisions",
	"POST /v1/deletions:reject":       "Decisions",
	"GET /v1/reports/due":             "DueReport",
	"GET /v1/lifecycle":               "LifecycleStatus",
	"GET /v1/wipes/{id}":              "Wipe",
	"GET /v1/subjects/{entity}/{id}":  "SubjectState",
	"GET /v1/whoami":                  "Whoami",
}

// optionalBodies are request bodies a client may leave out.
var optionalBodies = map[string]bool{"DeletionDecision": true}

func isRegisterWrite(method, path string) bool {
	if method == "GET" {
		return false
	}
	if path == "/v1/registers" || path == "/v1/config" {
		return true
	}
	for _, k := range []string{"sensitivities", "categories", "purposes", "legalisations", "rules", "roles"} {
		if strings.HasPrefix(path, "/v1/"+k) {
			return true
		}
	}
	return false
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// OpenAPI returns the OpenAPI 3 document of the server's routes, built from
// the same table the router is built from.
func (s *Server) OpenAPI() map[string]any {
	paths := map[string]any{}
	for _, rt := range s.routes {
		item, _ := paths[rt.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.path] = item
		}
		op := map[string]any{
			"summary":     rt.summary,
			"operationId": operationID(rt.method, rt.path),
			"responses": map[string]any{
				"200":     map[string]any{"description": "success (POST that creates: 201; wipe request: 202)"},
				"default": map[string]any{"description": "error", "content": jsonContent("Error")},
			},
		}
		switch rt.scope {
		case "":
			op["security"] = []any{}
		case scopeAnyToken:
			op["security"] = []any{map[string]any{"bearer": []string{}}}
			op["x-required-scope"] = "any valid token"
		default:
			op["security"] = []any{map[string]any{"bearer": []string{rt.scope}}}
			op["x-required-scope"] = rt.scope
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		qps := queryParams[rt.method+" "+rt.path]
		if isRegisterWrite(rt.method, rt.path) {
			qps = append(qps, registerWriteParams...)
		}
		for _, q := range qps {
			params = append(params, map[string]any{"name": q.name, "in": "query", "required": false, "description": q.desc, "schema": map[string]any{"type": q.typ}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if a := answerSchemas[rt.method+" "+rt.path]; a != "" {
			content := jsonContent(a)
			if slices.Contains(qps, decisionDryRun) {
				content = map[string]any{"application/json": map[string]any{"schema": map[string]any{"oneOf": []any{
					map[string]any{"$ref": "#/components/schemas/" + a}, map[string]any{"$ref": "#/components/schemas/DecisionPreview"}}}}}
			}
			op["responses"].(map[string]any)["200"] = map[string]any{"description": "success (DecisionPreview with ?dry_run=true)", "content": content}
			if !slices.Contains(qps, decisionDryRun) {
				op["responses"].(map[string]any)["200"].(map[string]any)["description"] = "success"
			}
		}
		if isRegisterWrite(rt.method, rt.path) {
			op["responses"].(map[string]any)["409"] = map[string]any{"description": "in_use (a reference remains: used_by, references) or confirmation_required (the change would create more deletions than lifecycle.max_deletions_per_change; the body holds the preview)", "content": jsonContent("Error")}
		}
		if rt.body != "" {
			content := jsonContent(rt.body)
			if rt.method == "PATCH" {
				// A merge patch has the document's members, each optional;
				// null removes one.
				content = map[string]any{mergePatchType: content["application/json"]}
			}
			op["requestBody"] = map[string]any{"required": !optionalBodies[rt.body], "content": content}
		}
		item[strings.ToLower(rt.method)] = op
	}
	schemas := map[string]any{}
	for name, t := range schemaTypes {
		schemas[name] = schemaOf(t)
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "gdprgate admin API",
			"version":     "1",
			"description": "Registers, evidence, subjects' computed state, wipes and audit. Bearer tokens with scopes; /healthz, /readyz, /metrics and this document are open. Errors are {\"error\":code,\"message\":text}. Register answers carry ETag; writes honour If-Match. PUT replaces a whole document and refuses (422, naming them) missing members; PATCH takes a JSON merge patch (RFC 7396). Turning gdpr_enforced off needs the admin scope and \"confirm\": true. Every register write takes ?dry_run=true (preview its effect on the subjects, change nothing) and ?confirm=true (needed when it would create more deletions than lifecycle.max_deletions_per_change). Deletion work (WipeCtcAll wipes, lifecycle erasures, purges) is under /v1/deletions: lifecycle deletions are held for approval by default.",
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas":         schemas,
		},
		"security": []any{map[string]any{"bearer": []string{}}},
	}
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.OpenAPI())
}

func jsonContent(schema string) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/" + schema}}}
}

func operationID(method, path string) string {
	p := strings.NewReplacer("/v1/", "", "/", "_", "{", "", "}", "", ":", "_", ".", "_").Replace(path)
	return strings.ToLower(method) + "_" + strings.Trim(p, "_")
}

var timeType = reflect.TypeFor[time.Time]()

// schemaOf is a small JSON-schema rendering of a Go type following its json
// tags (embedded structs are flattened, as encoding/json does).
func schemaOf(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		// A pointer member may be null (the console offers "none" for it).
		s := schemaOf(t.Elem())
		s["nullable"] = true
		return s
	}
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Struct:
		props := map[string]any{}
		addStructProps(t, props)
		return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	}
	return map[string]any{}
}

func addStructProps(t reflect.Type, props map[string]any) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			addStructProps(f.Type, props)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = schemaOf(f.Type)
	}
}
