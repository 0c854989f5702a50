package natsperm

import (
	"fmt"
	"io"
	"strings"
)

// PasswordVar is the environment variable the printed server configuration
// takes role's password from: nats-server resolves $NAME references when it
// loads the file, so the file itself holds no secret.
func PasswordVar(r Role) string {
	return "VODPIPE_NATS_" + strings.ToUpper(string(r)) + "_PASSWORD"
}

// WriteServerConfig writes a nats-server configuration block with one user
// per role (named after it) and its permissions, passwords referenced from
// PasswordVar. It goes in the server's main file or in an account's block.
func WriteServerConfig(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# vodpipe's NATS users, one per service and one for outside job publishers\n")
	b.WriteString("# (printed by `vodpipe nats-config`; permissions from internal/natsperm).\n")
	b.WriteString("# Passwords come from the environment of nats-server when it loads this file:\n")
	for _, r := range Roles() {
		fmt.Fprintf(&b, "#   %s\n", PasswordVar(r))
	}
	b.WriteString("# Each service connects with VODPIPE_NATS_USER=<role> and VODPIPE_NATS_PASSWORD_FILE.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, r := range Roles() {
		p, err := For(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "    {\n      user: %q\n      password: $%s\n      permissions: {\n", string(r), PasswordVar(r))
		writeList(&b, "publish", p.Publish)
		writeList(&b, "subscribe", p.Subscribe)
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeList(b *strings.Builder, name string, subjects []string) {
	fmt.Fprintf(b, "        %s: { allow: [\n", name)
	for _, s := range subjects {
		fmt.Fprintf(b, "          %q\n", s)
	}
	b.WriteString("        ] }\n")
}
