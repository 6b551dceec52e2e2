package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/model"
)

// apiError is every error answer: a stable code, a human message and, for
// validation failures, the offending fields.
type apiError struct {
	Error   string             `json:"error"`
	Message string             `json:"message"`
	Errors  []model.FieldError `json:"errors,omitempty"`
	// UsedBy lists what still references an object that cannot be deleted,
	// and References counts those references.
	UsedBy     []string `json:"used_by,omitempty"`
	References int      `json:"references,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

func writeValidation(w http.ResponseWriter, errs []model.FieldError) {
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = e.Error()
	}
	writeJSON(w, http.StatusUnprocessableEntity, apiError{
		Error: "validation_failed", Message: strings.Join(parts, "; "), Errors: errs,
	})
}

// errBadBody is a request body the handler refused; it has been answered.
var errBadBody = errors.New("bad request body")

// decodeBody decodes exactly one JSON value into out, refusing unknown
// fields (names are matched exactly), duplicate members, trailing data and
// bodies over limit. On failure it answers (400, 413 or 422 for a null
// where none is allowed) and returns errBadBody.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, out any) error {
	data, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	if _, rerr := parseDoc(data, out, shapeOpts{}); rerr != nil {
		rerr.answer(w, limit)
		return errBadBody
	}
	return nil
}

func answerDecodeError(w http.ResponseWriter, err error, limit int64) {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the request body exceeds %d bytes", limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "malformed_json", "the request body is empty; a JSON object is expected")
	case errors.As(err, &se):
		writeError(w, http.StatusBadRequest, "malformed_json", fmt.Sprintf("the body is not valid JSON at byte %d: %v", se.Offset, err))
	case errors.As(err, &te):
		writeError(w, http.StatusBadRequest, "malformed_json", fmt.Sprintf("field %q: %s cannot hold a JSON %s", te.Field, te.Type, te.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		writeError(w, http.StatusBadRequest, "unknown_field", strings.TrimPrefix(err.Error(), "json: "))
	default:
		writeError(w, http.StatusBadRequest, "malformed_json", err.Error())
	}
}

// storeFailed answers a store error that the handler does not branch on.
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case errors.Is(err, cache.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", what+": not found")
	case errors.Is(err, cache.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", what+": changed concurrently; read it again and retry")
	case errors.Is(err, cache.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", what+": the store cannot be reached")
	default:
		var ve *model.ValidationError
		if errors.As(err, &ve) {
			writeValidation(w, ve.Errors)
			return
		}
		s.log.LogAttrs(r.Context(), slog.LevelError, "store call failed", slog.String("what", what), slog.String("err", err.Error()))
		writeError(w, http.StatusInternalServerError, "internal", what+": the store failed; see the server log")
	}
}

func setETag(w http.ResponseWriter, version int64) {
	w.Header().Set("ETag", `"`+strconv.FormatInt(version, 10)+`"`)
}

// ifMatch parses If-Match. ok is false when the header is absent or "*".
// A malformed header answers 400 and returns errBadBody.
func ifMatch(w http.ResponseWriter, r *http.Request) (version int64, ok bool, err error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, false, nil
	}
	h = strings.TrimPrefix(h, "W/")
	v, perr := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
	if perr != nil {
		writeError(w, http.StatusBadRequest, "bad_if_match", `If-Match must be an ETag of this API, e.g. "12"`)
		return 0, false, errBadBody
	}
	return v, true, nil
}
