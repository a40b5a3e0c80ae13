// Package notify sends Concord's notifications out: members register rosters of their
// attributed patients and FHIR Subscriptions (R5 Backport, rest-hook); changes that
// members may want to hear about are written to the transactional outbox
// (outbox_events) in the same transaction as the change; a dispatcher fans each event out
// to the subscriptions of members whose roster holds the person, decides consent for
// each recipient through records (audited as a disclosure), numbers the notification per
// subscription, and delivers id-only Backport notification Bundles at least once, with
// exponential backoff and jitter. Receivers dedupe by the event number. The MPI's link
// events (mpi.link-changed) reach the patient-link-changed topic the same way, each
// member told about its own Patient only (see linkRecipients).
//
// Every outbound request goes through NewClient: no redirects, no proxies, and no
// loopback, private, link-local or reserved target however it is spelled or resolved,
// except exact addresses named in ClientConfig.Allow.
package notify
