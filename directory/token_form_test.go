package directory

import (
	"net/url"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// A parameter given twice is refused before anything else is read: two values could let the
// token endpoint and whatever sits in front of it read different ones.
func TestExchangeRefusesRepeatedParameters(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	twice := func(k string, second func(first string) string) url.Values {
		form := tokenForm(f.es().sign(t), "system/*.rs")
		form[k] = append(form[k], second(form.Get(k)))
		return form
	}
	same := func(v string) string { return v }
	tests := []struct {
		name string
		form url.Values
	}{
		{"scope twice, different", twice("scope", func(string) string { return "system/Observation.c" })},
		{"scope twice, same", twice("scope", same)},
		{"grant_type twice", twice("grant_type", same)},
		{"grant_type, second one other", twice("grant_type", func(string) string { return "password" })},
		{"client_assertion_type twice", twice("client_assertion_type", same)},
		{"client_assertion twice, same", twice("client_assertion", same)},
		{"client_assertion twice, other client", twice("client_assertion", func(string) string {
			return f.valid(f.narrow, jose.RS384, keys.rsa2, "n-1").sign(t)
		})},
		{"an unknown parameter twice", func() url.Values {
			form := tokenForm(f.es().sign(t), "system/*.rs")
			form["client_id"] = []string{f.single.ID, f.narrow.ID}
			return form
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.exchange(t, tt.form)
			wantOAuth(t, err, "invalid_request", "more than once")
		})
	}
	if _, err := f.exchange(t, tokenForm(f.es().sign(t), "system/*.rs")); err != nil {
		t.Fatalf("control, each parameter once: %v", err)
	}
}
