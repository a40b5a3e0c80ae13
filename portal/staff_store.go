package portal

import (
	"context"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// StaffStore keeps staff logins in portal_staff. It implements StaffDirectory.
type StaffStore struct {
	db db.Querier
}

var _ StaffDirectory = (*StaffStore)(nil)

// NewStaffStore returns a store on q (usually the pool).
func NewStaffStore(q db.Querier) *StaffStore { return &StaffStore{db: q} }

// StaffForLogin returns the staff record for (issuer, subject) with its member's name. It
// returns errs.NotFound when there is none, errs.Unavailable when the database fails.
func (s *StaffStore) StaffForLogin(ctx context.Context, issuer, subject string) (Staff, error) {
	const op = "portal.StaffStore.StaffForLogin"
	var st Staff
	var role string
	err := s.db.QueryRow(ctx, `
		SELECT s.role, s.member_id, m.name, s.display_name
		FROM portal_staff s JOIN directory_members m ON m.id = s.member_id
		WHERE s.issuer = $1 AND s.subject = $2`, issuer, subject).Scan(&role, &st.Org, &st.OrgName, &st.Name)
	if err != nil {
		return Staff{}, db.Map(op, err)
	}
	st.Role = Role(role)
	return st, nil
}

// AddStaff records that the login (issuer, subject) is staff in role at member org. It
// returns errs.Invalid for a role other than clinician or officer, an empty field or an
// unknown member, and errs.Conflict when the login is already staff.
func (s *StaffStore) AddStaff(ctx context.Context, issuer, subject string, st Staff) error {
	const op = "portal.StaffStore.AddStaff"
	if st.Role != RoleClinician && st.Role != RoleOfficer {
		return errs.E(op, errs.Invalid, "staff role must be clinician or officer")
	}
	if issuer == "" || subject == "" || st.Org == "" || st.Name == "" {
		return errs.E(op, errs.Invalid, "staff needs an issuer, a subject, an organization and a name")
	}
	_, err := s.db.Exec(ctx, `
		INSERT INTO portal_staff (issuer, subject, role, member_id, display_name)
		VALUES ($1, $2, $3, $4, $5)`, issuer, subject, string(st.Role), st.Org, st.Name)
	return db.Map(op, err)
}
