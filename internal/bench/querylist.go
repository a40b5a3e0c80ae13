package bench

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// ParseQueryList reads relative FHIR URLs, one per line; blank lines and lines starting
// with '#' are skipped, and a leading '/' is dropped. It returns errs.Invalid for an absolute
// URL, so a list cannot send the run to another host.
func ParseQueryList(r io.Reader) ([]string, error) {
	const op = "bench.ParseQueryList"
	var out []string
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if strings.Contains(s, "://") {
			return nil, errs.E(op, errs.Invalid, fmt.Sprintf("query list line %d is not a relative URL", line))
		}
		out = append(out, strings.TrimPrefix(s, "/"))
	}
	if err := sc.Err(); err != nil {
		return nil, errs.E(op, errs.Invalid, "cannot read the query list", err)
	}
	return out, nil
}

// QueryList turns a list of relative FHIR URLs into scenarios against a base and, if set,
// a peer base measured in the same run: each query on the base is a ratio to the same query
// on the peer, and their result counts (Bundle.total, or the entry count; reads count as 1)
// must agree in every round, or the run fails.
type QueryList struct {
	Base       string // FHIR base URL, e.g. http://127.0.0.1:8080/fhir
	Header     func() http.Header
	Peer       string // optional second FHIR base
	PeerHeader func() http.Header
	Queries    []string
	Conns      int    // per query; default 16
	Anchor     string // reference for base queries when there is no peer (e.g. AnchorPG); may be ""
	Prefix     string // scenario names are Prefix+"qNN" and "peer:"+Prefix+"qNN"; default "q"
}

// Scenarios returns one scenario per query on the base, named Prefix+"01", ..., and with a
// peer one more per query, named "peer:"+name, which the base one is a ratio to.
func (q QueryList) Scenarios() []Scenario {
	prefix := q.Prefix
	if prefix == "" {
		prefix = "q"
	}
	var out []Scenario
	for i, rel := range q.Queries {
		name := fmt.Sprintf("%s%02d", prefix, i+1)
		base := HTTPScenario{Name: name, URL: join(q.Base, rel), Header: q.Header, Count: resultCount,
			Conns: q.Conns, Anchor: q.Anchor}
		if q.Peer != "" {
			peer := HTTPScenario{Name: "peer:" + name, URL: join(q.Peer, rel), Header: q.PeerHeader,
				Count: resultCount, Conns: q.Conns}
			base.Anchor = peer.Name
			out = append(out, base, peer)
			continue
		}
		out = append(out, base)
	}
	return out
}

// Legend maps scenario names to their queries, for printing beside the table.
func (q QueryList) Legend() map[string]string {
	prefix := q.Prefix
	if prefix == "" {
		prefix = "q"
	}
	m := make(map[string]string, len(q.Queries))
	for i, rel := range q.Queries {
		m[fmt.Sprintf("%s%02d", prefix, i+1)] = rel
	}
	return m
}

// resultCount counts a search Bundle's results; any other resource (a read) counts as 1.
func resultCount(body []byte) (int, error) {
	n, isBundle, err := bundleCount(body)
	if err == nil && !isBundle {
		return 1, nil
	}
	return n, err
}

func join(base, rel string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimPrefix(rel, "/")
}
