package consent

import "log/slog"

// LogValue logs a directive by IDs and codes only; the captured form (which may hold
// the signed document) and the provisions stay out of logs.
func (d Directive) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", string(d.ID)), slog.Int("version", d.Version),
		slog.String("person", d.PersonID), slog.String("kind", d.Kind.String()),
		slog.String("status", string(d.Status)), slog.String("rule", string(d.PolicyRule)))
}

// LogValue logs the attachment's type only.
func (a Attachment) LogValue() slog.Value {
	return slog.GroupValue(slog.String("contentType", a.ContentType), slog.Int("bytes", len(a.Data)))
}

// LogValue logs a request by IDs and codes; a break-the-glass declaration appears by
// its reason code, never its text.
func (r Request) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("actor", r.Actor), slog.String("role", r.ActorRole), slog.String("org", r.Org),
		slog.String("purpose", r.Purpose), slog.String("person", r.PersonID),
		slog.String("type", r.Class.ResourceType), slog.Any("labels", r.Labels), slog.Time("at", r.At),
	}
	if r.BreakGlass != nil {
		attrs = append(attrs, slog.String("btg", r.BreakGlass.ReasonCode))
	}
	return slog.GroupValue(attrs...)
}

// LogValue logs a decision's outcome, reason, deciding directive and provision.
func (d Decision) LogValue() slog.Value {
	return slog.GroupValue(slog.Bool("allow", d.Allow), slog.String("reason", d.Reason.String()),
		slog.String("by", string(d.By)), slog.Int("version", d.Version), slog.String("provision", d.Provision))
}
