package adminapi

import (
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// schemaTypes are the request-body schemas named in the route table and a
// few answers, generated from the Go types so they cannot drift from them.
var schemaTypes = map[string]reflect.Type{
	"Sensitivity":   reflect.TypeFor[model.Sensitivity](),
	"Category":      reflect.TypeFor[model.Category](),
	"Purpose":       reflect.TypeFor[model.Purpose](),
	"Legalisation":  reflect.TypeFor[legalisationView](),
	"Rule":          reflect.TypeFor[model.Rule](),
	"Role":          reflect.TypeFor[model.Role](),
	"Config":        reflect.TypeFor[model.Config](),
	"Registers":     reflect.TypeFor[model.Registers](),
	"EvidenceInput": reflect.TypeFor[evidenceInput](),
	"SubjectInput":  reflect.TypeFor[subjectInput](),
	"WipeRequest":   reflect.TypeFor[wipeRequest](),
	"Wipe":          reflect.TypeFor[cache.WipeRecord](),
	"AuditEntry":    reflect.TypeFor[audit.Entry](),
	"SubjectState":  reflect.TypeFor[subjectView](),
	"Error":         reflect.TypeFor[apiError](),
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
		if rt.scope == "" {
			op["security"] = []any{}
		} else {
			op["security"] = []any{map[string]any{"bearer": []string{rt.scope}}}
			op["x-required-scope"] = rt.scope
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.body != "" {
			content := jsonContent(rt.body)
			if rt.method == "PATCH" {
				// A merge patch has the document's members, each optional;
				// null removes one.
				content = map[string]any{mergePatchType: content["application/json"]}
			}
			op["requestBody"] = map[string]any{"required": true, "content": content}
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
			"description": "Registers, evidence, subjects' computed state, wipes and audit. Bearer tokens with scopes; /healthz, /readyz, /metrics and this document are open. Errors are {\"error\":code,\"message\":text}. Register answers carry ETag; writes honour If-Match. PUT replaces a whole document and refuses (422, naming them) missing members; PATCH takes a JSON merge patch (RFC 7396). Turning gdpr_enforced off needs the admin scope and \"confirm\": true.",
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
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
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
