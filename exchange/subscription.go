package exchange

import (
	"cmp"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// createSubscription handles POST [base]/Subscription (R4 + Subscriptions Backport): a
// served topic in criteria, an optional backport-filter-criteria, channel rest-hook to
// an endpoint whose exact origin is registered to the member, id-only or empty payload,
// and an optional end that has not yet passed (else 400 naming Subscription.end); the
// token must also read the topic's focus type (notify.FocusType; else 403). The
// subscription starts requested; the dispatcher's handshake makes it active, and it turns
// off when its end passes.
func (s *Server) createSubscription(c echo.Context) error {
	const op = "exchange.createSubscription"
	if err := require(c, "Subscription", 'c'); err != nil {
		return err
	}
	_, res, err := s.readRequestResource(c, op, "Subscription")
	if err != nil {
		return err
	}
	sub, err := notify.ParseSubscription(res.Bytes())
	if err != nil {
		return err
	}
	// Every notification names its focus (an Encounter, or the member's Patient): the
	// token must be allowed to read that type, as $events checks for each event.
	if ft := notify.FocusType(sub.Topic); ft != "" {
		if err := require(c, ft, 'r'); err != nil {
			return err
		}
	}
	sub.ID, sub.MemberID = store.NewID(), principal(c).MemberID
	ctx := c.Request().Context()
	err = db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		if sub, err = s.Notify.CreateSubscription(ctx, tx, sub); err != nil {
			return err
		}
		var w records.Writes // a member's configuration: an event with no patient
		w.Add(audit.Create, "Subscription", sub.ID, "")
		return s.auditWrites(ctx, tx, viewer(c), &w)
	})
	if err != nil {
		return err
	}
	out, err := sub.JSON()
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", s.FHIRBase()+"/Subscription/"+sub.ID)
	return c.Blob(http.StatusCreated, mimeFHIR, out)
}

// readSubscription handles GET [base]/Subscription/{id}: the member's own only; any
// other id is 404. Header values are never echoed.
func (s *Server) readSubscription(c echo.Context) error {
	if err := require(c, "Subscription", 'r'); err != nil {
		return err
	}
	sub, err := s.Notify.Subscription(c.Request().Context(), s.Pool, principal(c).MemberID, c.Param("id"))
	if err != nil {
		return err
	}
	out, err := sub.JSON()
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, mimeFHIR, out)
}

type subscriptionEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
}

type subscriptionSet struct {
	ResourceType string              `json:"resourceType"`
	Type         string              `json:"type"`
	Total        int                 `json:"total"`
	Entry        []subscriptionEntry `json:"entry,omitempty"`
}

// searchSubscriptions handles GET [base]/Subscription: the member's subscriptions
// (no search parameters are supported).
func (s *Server) searchSubscriptions(c echo.Context) error {
	const op = "exchange.searchSubscriptions"
	if err := require(c, "Subscription", 's'); err != nil {
		return err
	}
	for k := range c.QueryParams() {
		if k != "_format" {
			return errs.E(op, errs.Invalid, "Subscription search takes no parameters")
		}
	}
	subs, err := s.Notify.Subscriptions(c.Request().Context(), s.Pool, principal(c).MemberID)
	if err != nil {
		return err
	}
	set := subscriptionSet{ResourceType: "Bundle", Type: "searchset", Total: len(subs)}
	for _, sub := range subs {
		b, err := sub.JSON()
		if err != nil {
			return err
		}
		set.Entry = append(set.Entry, subscriptionEntry{FullURL: s.FHIRBase() + "/Subscription/" + sub.ID, Resource: b})
	}
	out, err := json.Marshal(set)
	if err != nil {
		return errs.E(op, err)
	}
	return c.Blob(http.StatusOK, mimeFHIR, out)
}

// deleteSubscription handles DELETE [base]/Subscription/{id}: nothing more is sent.
func (s *Server) deleteSubscription(c echo.Context) error {
	if err := require(c, "Subscription", 'd'); err != nil {
		return err
	}
	ctx := c.Request().Context()
	err := db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		if err := s.Notify.DeleteSubscription(ctx, tx, principal(c).MemberID, c.Param("id")); err != nil {
			return err
		}
		var w records.Writes
		w.Add(audit.Delete, "Subscription", c.Param("id"), "")
		return s.auditWrites(ctx, tx, viewer(c), &w)
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// subscriptionStatus handles GET [base]/Subscription/{id}/$status: a searchset led by
// the SubscriptionStatus Parameters (status, events-since-subscription-start).
func (s *Server) subscriptionStatus(c echo.Context) error {
	if err := require(c, "Subscription", 'r'); err != nil {
		return err
	}
	sub, err := s.Notify.Subscription(c.Request().Context(), s.Pool, principal(c).MemberID, c.Param("id"))
	if err != nil {
		return err
	}
	out, err := notify.Notification{FHIRBase: s.FHIRBase(), Sub: sub, Type: notify.TypeQueryStatus, At: s.Now()}.Bundle()
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, mimeFHIR, out)
}

// subscriptionEvents handles GET [base]/Subscription/{id}/$events?eventsSinceNumber=
// &eventsUntilNumber=: the numbered notifications again (id-only), so a receiver can
// fill a gap it saw in events-since-subscription-start. At most 100 per call. Each
// event's focus is decided again for the caller through records (as a read, audited):
// consent may have changed since delivery, so a focus it may no longer see, or that is
// gone, is left out and only the event number remains. A link-changed event is decided
// again on the resource its delivery was decided on (Notified.ConsentRef: another member's
// Patient of the person), and a denied one loses its focus and link details alike. The
// answer is not cached.
func (s *Server) subscriptionEvents(c echo.Context) error {
	const op = "exchange.subscriptionEvents"
	if err := require(c, "Subscription", 'r'); err != nil {
		return err
	}
	num := func(name string, def int64) (int64, error) {
		v := c.QueryParam(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, errs.E(op, errs.Invalid, name+" must be a non-negative integer")
		}
		return n, nil
	}
	from, err := num("eventsSinceNumber", 1)
	if err != nil {
		return err
	}
	to, err := num("eventsUntilNumber", 0)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	sub, err := s.Notify.Subscription(ctx, s.Pool, principal(c).MemberID, c.Param("id"))
	if err != nil {
		return err
	}
	evs, err := s.Notify.Events(ctx, s.Pool, sub.ID, from, to, 100)
	if err != nil {
		return err
	}
	v := viewer(c)
	scopes := principal(c).Scopes
	for i := range evs {
		if evs[i].Focus == "" {
			evs[i].Context = nil
			continue
		}
		// The focus is a read of its resource: without the read scope of its type the
		// event carries neither it nor its context, as when consent withholds it.
		if ft, _, _ := strings.Cut(evs[i].Focus, "/"); !scopes.Allows(ft, 'r') {
			evs[i].Focus, evs[i].Context = "", nil
			continue
		}
		// A link-changed event was decided on another member's Patient of the person
		// (ConsentRef), not on the member's own focus: decide on that again.
		typ, id, ok := strings.Cut(cmp.Or(evs[i].ConsentRef, evs[i].Focus), "/")
		if !ok {
			evs[i].Focus, evs[i].Context = "", nil
			continue
		}
		if _, err := s.Records.Read(ctx, v, typ, id); err != nil {
			if errs.CodeOf(err) != errs.NotFound {
				return err // consent or audit unavailable: disclose nothing
			}
			evs[i].Focus, evs[i].Context = "", nil
		}
	}
	out, err := notify.Notification{FHIRBase: s.FHIRBase(), Sub: sub, Type: notify.TypeQueryEvent, Events: evs, At: s.Now()}.Bundle()
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, out)
}
