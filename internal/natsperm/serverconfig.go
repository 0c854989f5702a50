package natsperm

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// PasswordVar is the environment variable the printed server configuration
// takes role's password from: nats-server resolves $NAME references when it
// loads the file, so the file itself holds no secret.
func PasswordVar(r Role) string {
	return "VODPIPE_NATS_" + strings.ToUpper(string(r)) + "_PASSWORD"
}

// ConfigUser is a user a server configuration adds to the shared account
// with every right (the embedded server's admin, for inspection).
type ConfigUser struct {
	Name, PasswordVar string
}

// WriteServerConfig writes the nats-server `accounts` block of vodpipe's
// roles: the shared account with ingest's user (and extra's, unrestricted)
// and the JetStream layout, and one account per other role, each with its
// user, its permissions and the imports they need; passwords are
// referenced from PasswordVar. It goes in the server's main file.
func WriteServerConfig(w io.Writer, extra ...ConfigUser) error {
	var b strings.Builder
	b.WriteString("# vodpipe's NATS accounts and users: one user per service and one for outside\n")
	b.WriteString("# job publishers (printed by `vodpipe nats-config`; from internal/natsperm).\n")
	b.WriteString("# The JetStream layout is in account " + SharedAccount + ", with ingest; every other\n")
	b.WriteString("# role has an account of its own that imports from it what its permissions name.\n")
	b.WriteString("# Passwords come from the environment of nats-server when it loads this file:\n")
	for _, r := range Roles() {
		fmt.Fprintf(&b, "#   %s\n", PasswordVar(r))
	}
	b.WriteString("# Each service connects with VODPIPE_NATS_USER=<role> and VODPIPE_NATS_PASSWORD_FILE.\n")
	b.WriteString("accounts {\n")

	// The shared account exports each subject once, to every account
	// that imports it.
	type export struct {
		Import
		accounts []string
	}
	var services, streams []*export
	find := func(list []*export, subj string) *export {
		for _, e := range list {
			if e.Subject == subj {
				return e
			}
		}
		return nil
	}
	imports := map[Role][]Import{}
	for _, r := range Roles() {
		ims, err := Imports(r)
		if err != nil {
			return err
		}
		imports[r] = ims
		for _, im := range ims {
			list := &streams
			if im.Service {
				list = &services
			}
			e := find(*list, im.Subject)
			if e == nil {
				e = &export{Import: im}
				*list = append(*list, e)
			}
			e.accounts = append(e.accounts, r.Account())
		}
	}

	fmt.Fprintf(&b, "  %s {\n    jetstream: enabled\n    users = [\n", SharedAccount)
	for _, u := range extra {
		fmt.Fprintf(&b, "      { user: %q, password: $%s }\n", u.Name, u.PasswordVar)
	}
	for _, r := range Roles() {
		if r.Account() == SharedAccount {
			if err := writeUser(&b, r); err != nil {
				return err
			}
		}
	}
	b.WriteString("    ]\n    exports = [\n")
	for _, e := range services {
		fmt.Fprintf(&b, "      { service: %q, accounts: [%s]", e.Subject, quoted(e.accounts))
		if e.Responses > 0 {
			fmt.Fprintf(&b, ", response_type: stream, response_threshold: %q", e.Responses.String())
		}
		b.WriteString(" }\n")
	}
	for _, e := range streams {
		fmt.Fprintf(&b, "      { stream: %q, accounts: [%s] }\n", e.Subject, quoted(e.accounts))
	}
	b.WriteString("    ]\n  }\n")

	for _, r := range Roles() {
		if r.Account() == SharedAccount {
			continue
		}
		fmt.Fprintf(&b, "  %s {\n    users = [\n", r.Account())
		if err := writeUser(&b, r); err != nil {
			return err
		}
		b.WriteString("    ]\n    imports = [\n")
		for _, im := range imports[r] {
			kind := "stream"
			if im.Service {
				kind = "service"
			}
			fmt.Fprintf(&b, "      { %s: { account: %q, subject: %q } }\n", kind, SharedAccount, im.Subject)
		}
		b.WriteString("    ]\n  }\n")
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeUser(b *strings.Builder, r Role) error {
	p, err := For(r)
	if err != nil {
		return err
	}
	fmt.Fprintf(b, "      {\n        user: %q\n        password: $%s\n        permissions: {\n", string(r), PasswordVar(r))
	writeList(b, "publish", p.Publish)
	writeList(b, "subscribe", p.Subscribe)
	b.WriteString("        }\n      }\n")
	return nil
}

func writeList(b *strings.Builder, name string, subjects []string) {
	fmt.Fprintf(b, "          %s: { allow: [\n", name)
	for _, s := range subjects {
		fmt.Fprintf(b, "            %q\n", s)
	}
	b.WriteString("          ] }\n")
}

func quoted(list []string) string {
	list = slices.Compact(slices.Clone(list))
	for i, s := range list {
		list[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(list, ", ")
}
