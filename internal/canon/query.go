package canon

import (
	"net/url"
	"strings"
)

// Query returns the value of query parameter name in raw (a query string
// without "?", or an application/x-www-form-urlencoded body), read so that
// no backend can find a different value under the same name:
//
//   - parameters are separated by "&" and by ";" (some frameworks split on
//     both), and a value that a ";" ends is refused: a backend that does not
//     split there reads a longer value;
//   - names are compared after decoding ("+" is a space), ignoring leading
//     spaces, with "." and " " equal to "_" (PHP's rewriting of names) and
//     case-insensitively (ASP.NET's query collection);
//   - the name followed by "[" (name[] or name[x], arrays in PHP and Rails)
//     is refused;
//   - repeated parameters must carry the same value: PHP and Rails act on the
//     last, others on the first;
//   - a malformed escape in a matching name or value is refused.
//
// found is false when no parameter has that name.
func Query(raw, name string) (value string, found bool, err error) {
	for raw != "" {
		end := strings.IndexAny(raw, "&;")
		kv, sep := raw, byte(0)
		if end >= 0 {
			kv, sep, raw = raw[:end], raw[end], raw[end+1:]
		} else {
			raw = ""
		}
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		match, err := queryNameMatches(k, name)
		if err != nil {
			return "", false, err
		}
		if !match {
			continue
		}
		if sep == ';' {
			return "", false, errorf(ReasonAmbiguousQuery, "query parameter %s is followed by ';', which backends read differently", name)
		}
		u, err := unescapeQuery(v)
		if err != nil {
			return "", false, errorf(ReasonBadEscape, "query parameter %s is not properly percent-encoded", name)
		}
		if found && u != value {
			return "", false, errorf(ReasonAmbiguousQuery, "query parameter %s is repeated with different values", name)
		}
		value, found = u, true
	}
	return value, found, nil
}

// queryNameMatches compares a raw query name with name the way the most
// lenient backend would; name[...] is an error (an array or hash).
func queryNameMatches(raw, name string) (bool, error) {
	k := raw
	if strings.ContainsAny(k, "%+") {
		u, err := unescapeQuery(k)
		if err != nil {
			// A name no one can read cannot be the one asked for, unless
			// its readable prefix already looks like it.
			if strings.HasPrefix(strings.ToLower(k), strings.ToLower(name)) {
				return false, errorf(ReasonBadEscape, "a query parameter name is not properly percent-encoded")
			}
			return false, nil
		}
		k = u
	}
	k = strings.TrimLeft(k, " ")
	if len(k) < len(name) {
		return false, nil
	}
	for i := 0; i < len(name); i++ {
		if queryNameByte(k[i]) != queryNameByte(name[i]) {
			return false, nil
		}
	}
	switch {
	case len(k) == len(name):
		return true, nil
	case k[len(name)] == '[':
		return false, errorf(ReasonAmbiguousQuery, "query parameter %s is sent as an array or map (%s[...])", name, name)
	}
	return false, nil
}

func queryNameByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '.' || c == ' ':
		return '_'
	}
	return c
}

// unescapeQuery decodes a query component ("+" is a space) without
// allocating when there is nothing to decode.
func unescapeQuery(s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// Header reads a header value gdprgate decides on. Every front-end joins a
// repeated header's values with "," (as Envoy does in a CheckRequest), so a
// "," means the header came twice or as a list, and backends differ on which
// element they use: refused.
func Header(value, name string) (string, error) {
	if strings.IndexByte(value, ',') >= 0 {
		return "", errorf(ReasonAmbiguousHdr, "header %s is repeated or holds a list", name)
	}
	return strings.TrimSpace(value), nil
}
