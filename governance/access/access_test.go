package access

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRoleTable lists every role against every permission. Columns:
// operator, supervisor, investigator, ig_officer, admin, wearer.
// A = ScopeAll, S = ScopeAssigned, O = ScopeOwn, - = ScopeNone.
func TestRoleTable(t *testing.T) {
	roles := []Role{Operator, Supervisor, Investigator, IGOfficer, Admin, Wearer}
	scopes := map[byte]Scope{'-': ScopeNone, 'A': ScopeAll, 'S': ScopeAssigned, 'O': ScopeOwn}
	matrix := []struct {
		perm Permission
		want string
	}{
		{ReadAlerts, "AAA-A-"},
		{ActOnAlerts, "AA--A-"},
		{ReadDevices, "-A--A-"},
		{ReadRejected, "-A--A-"},
		{ReadRoutes, "-A--A-"},
		{ReadEvidenceStatus, "-A-AA-"},
		{ManageDevices, "----A-"},
		{ManageUsers, "----A-"},
		{SearchClips, "--SA-O"}, // IG: metadata of everything; admin: nothing
		{ViewFootage, "--S--O"}, // IG officers and admins never watch footage
		{AssignIncidents, "-A-A--"},
		{CloseIncident, "--SA--"},
		{ExtendRetention, "--SA--"},
		{SetLegalHold, "--SA--"},
		{LiftLegalHold, "---A--"},
		{RequestRelease, "--S---"},
		{ApproveRelease, "---A--"}, // never the requester's role
		{ExportRelease, "--SA--"},
		{ReadAudit, "---A--"},
		{SubjectAccess, "---A-O"},
		{ReportIncident, "AA-A-O"},
		{ReadIncidents, "-A-A-O"},
		{ManageIncidents, "-A-A--"},
		{ReadReports, "-A-A--"}, // named reports also need ReadIncidents in ScopeAll
	}
	require.ElementsMatch(t, Roles(), roles, "the matrix covers every role")
	var perms []Permission
	for _, row := range matrix {
		perms = append(perms, row.perm)
	}
	require.ElementsMatch(t, Permissions(), perms, "the matrix covers every permission")
	for role, row := range roleTable {
		for p := range row {
			require.Contains(t, Permissions(), p, "%s's row names a permission Permissions() does not list", role)
		}
	}

	for _, row := range matrix {
		require.Len(t, row.want, len(roles), row.perm)
		for i, role := range roles {
			want := scopes[row.want[i]]
			t.Run(string(role)+"/"+string(row.perm), func(t *testing.T) {
				assert.Equal(t, want, role.Scope(row.perm))
				assert.Equal(t, want != ScopeNone, role.Allows(row.perm))
				assert.Equal(t, want, Principal{Name: "x", Role: role}.Scope(row.perm))
			})
		}
	}

	for _, tc := range []struct {
		name string
		role Role
		perm Permission
	}{
		{"unknown role", "intern", ReadAlerts},
		{"empty role", "", ReadAlerts},
		{"role case matters", "Admin", ReadAlerts},
		{"unknown permission", Admin, "launch_missiles"},
		{"empty permission", IGOfficer, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, ScopeNone, tc.role.Scope(tc.perm))
			assert.False(t, tc.role.Allows(tc.perm))
		})
	}
	assert.False(t, Role("intern").Valid())
	assert.True(t, IGOfficer.Valid())
}

func TestScopeText(t *testing.T) {
	for s, want := range map[Scope]string{ScopeNone: "none", ScopeOwn: "own", ScopeAssigned: "assigned", ScopeAll: "all", Scope(9): "invalid"} {
		b, err := s.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, want, string(b))
	}
	assert.Less(t, ScopeOwn, ScopeAssigned, "scopes are ordered narrowest first")
	assert.Less(t, ScopeAssigned, ScopeAll)
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"Operator 7", "a", "nurse.a_b-c@trust", "Siobhán Ó Brien", strings.Repeat("x", 64)} {
		assert.NoError(t, ValidName(ok), ok)
	}
	for bad, why := range map[string]string{
		"":                      "1-64",
		strings.Repeat("x", 65): "1-64",
		" lead":                 "start or end",
		"trail ":                "start or end",
		"a/b":                   `'/'`,
		"a:b":                   `':'`,
		"tab\there":             `'\t'`,
	} {
		err := ValidName(bad)
		require.ErrorIs(t, err, ErrInvalid, bad)
		assert.ErrorContains(t, err, why, bad)
	}
}
