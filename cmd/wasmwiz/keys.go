package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
	"github.com/wasmwiz/wasmwiz/schemas"
)

const keysUsage = `usage: wasmwiz keys <command> [flags]

  list                              your tenant's keys
  create [--name N] [--tier T] [--scopes a,b] [--expires-in 720h]
                                    a new key for your tenant (printed once); tier, scopes and
                                    expiry at most your key's (default: your key's)
  revoke <key id>                   revoke a key and every token made from it
  rotate <key id> [--grace 1h]      a new key now; the old one stays valid for the grace (at most
                                    168h), for in-flight work only: it can manage no keys
  token                             trade your key for a 15-minute JWT (never outliving the key)
  tenants                           (admin) list tenants
  tenant-create <id> --tier T       (admin) create a tenant
  tenant-update <id> [--tier T] [--suspend | --resume]
                                    (admin) change a tenant's tier or suspend it
  admin-create --tenant ID [--tier T] [--name N] [--admin] [--scopes a,b] [--expires-in D]
                                    (admin) a key for any tenant (printed once)
  admin-rotate <key id> [--grace 1h]
                                    (admin) rotate any key, admin keys included
  admin-revoke <key id>             (admin) revoke any key, admin keys included

Flags common to all: --url (WASMWIZ_URL), --key (WASMWIZ_KEY), --context (WASMWIZ_CONTEXT);
by default the current context (wasmwiz login, wasmwiz context), else ./wasmwiz-data/dev-api-key`

// runKeys manages keys, tokens and tenants through the REST API.
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, keysUsage)
		if len(args) == 0 {
			return usageError{"missing command"}
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("keys "+sub, getenv, stderr)
	mk, _ := newClient(fs)
	name := fs.String("name", "", "key name")
	tier := fs.String("tier", "", "tier")
	scopes := fs.String("scopes", "", "comma-separated scopes: "+strings.Join(schemas.AllScopes, ","))
	expiresIn := fs.Duration("expires-in", 0, "the key expires after this long (default: never)")
	grace := fs.Duration("grace", time.Hour, "rotate: how long the old key stays valid (at most 168h)")
	tenant := fs.String("tenant", "", "tenant id")
	admin := fs.Bool("admin", false, "admin-create: an operator key")
	suspend := fs.Bool("suspend", false, "tenant-update: suspend the tenant")
	resume := fs.Bool("resume", false, "tenant-update: lift a suspension")
	asJSON := fs.Bool("json", false, "list, tenants, create, rotate: print JSON instead of a table or text")
	pos, err := fs.parseInterspersed(rest)
	if err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	var scopeList []string
	if *scopes != "" {
		scopeList = strings.Split(*scopes, ",")
	}
	var expires *time.Time
	if *expiresIn > 0 {
		expires = new(time.Now().Add(*expiresIn).UTC())
	}
	arg := func(what string) (string, error) {
		if len(pos) != 1 {
			return "", usageError{fmt.Sprintf("usage: wasmwiz keys %s <%s>", sub, what)}
		}
		return pos[0], nil
	}
	switch sub {
	case "list":
		r, err := c.api.ListKeysWithResponse(ctx)
		if err != nil {
			return err
		}
		l, err := answer(r.JSON200, r.StatusCode())
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, l)
		}
		printKeys(stdout, l.Keys)
	case "create":
		r, err := c.api.CreateKeyWithResponse(ctx, wasmwiz.NewKeyRequest{Name: optional(*name), Tier: optional(*tier), Scopes: scopeList, ExpiresAt: expires})
		if err != nil {
			return err
		}
		k, err := answer(r.JSON201, r.StatusCode())
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, k)
		}
		printCreated(stdout, k)
	case "revoke", "admin-revoke":
		id, err := arg("key id")
		if err != nil {
			return err
		}
		if sub == "revoke" {
			_, err = c.api.RevokeKeyWithResponse(ctx, id)
		} else {
			_, err = c.api.AdminRevokeKeyWithResponse(ctx, id)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (and every token made from it)\n", id)
	case "rotate", "admin-rotate":
		id, err := arg("key id")
		if err != nil {
			return err
		}
		if *grace < time.Second {
			return usageError{"--grace must be at least 1s"}
		}
		body := wasmwiz.RotateKeyRequest{OldKeyExpiresInSeconds: new(int64(grace.Seconds()))}
		var k *wasmwiz.CreatedKey
		if sub == "rotate" {
			r, err := c.api.RotateKeyWithResponse(ctx, id, body)
			if err != nil {
				return err
			}
			k, err = answer(r.JSON201, r.StatusCode())
		} else {
			r, err := c.api.AdminRotateKeyWithResponse(ctx, id, body)
			if err != nil {
				return err
			}
			k, err = answer(r.JSON201, r.StatusCode())
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, k)
		}
		printCreated(stdout, k)
		fmt.Fprintf(stdout, "the old key %s stays valid for %s\n", id, *grace)
	case "token":
		r, err := c.api.CreateTokenWithResponse(ctx)
		if err != nil {
			return err
		}
		tok, err := answer(r.JSON200, r.StatusCode())
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok.Token)
		fmt.Fprintf(stderr, "expires at %s\n", tok.ExpiresAt.Format(time.RFC3339))
	case "tenants":
		r, err := c.api.AdminListTenantsWithResponse(ctx)
		if err != nil {
			return err
		}
		l, err := answer(r.JSON200, r.StatusCode())
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, l)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TENANT\tTIER\tSUSPENDED\tCREATED")
		for _, t := range l.Tenants {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", t.ID, t.Tier, t.Suspended != nil && *t.Suspended, t.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case "tenant-create":
		id, err := arg("tenant id")
		if err != nil {
			return err
		}
		r, err := c.api.AdminCreateTenantWithResponse(ctx, wasmwiz.CreateTenantRequest{ID: id, Tier: *tier})
		if err != nil {
			return err
		}
		t, err := answer(r.JSON201, r.StatusCode())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created tenant %s on tier %s\n", t.ID, t.Tier)
	case "tenant-update":
		id, err := arg("tenant id")
		if err != nil {
			return err
		}
		req := wasmwiz.UpdateTenantRequest{Tier: optional(*tier)}
		if *suspend || *resume {
			req.Suspended = new(*suspend)
		}
		r, err := c.api.AdminUpdateTenantWithResponse(ctx, id, req)
		if err != nil {
			return err
		}
		t, err := answer(r.JSON200, r.StatusCode())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s: tier %s, suspended %v\n", t.ID, t.Tier, t.Suspended != nil && *t.Suspended)
	case "admin-create":
		r, err := c.api.AdminCreateKeyWithResponse(ctx, wasmwiz.CreateKeyRequest{TenantID: *tenant, Tier: optional(*tier), Name: optional(*name),
			Admin: optional(*admin), Scopes: scopeList, ExpiresAt: expires})
		if err != nil {
			return err
		}
		k, err := answer(r.JSON201, r.StatusCode())
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, k)
		}
		printCreated(stdout, k)
	default:
		return usageError{"unknown keys command " + sub + "\n\n" + keysUsage}
	}
	return nil
}

func printKeys(w io.Writer, keys []wasmwiz.Key) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tTIER\tSCOPES\tCREATED\tLAST USED\tEXPIRES")
	for _, k := range keys {
		scopes := "all"
		if k.Scopes != nil {
			scopes = strings.Join(k.Scopes, ",")
		}
		if k.Admin != nil && *k.Admin {
			scopes = "admin"
		}
		expires := fmtTime(k.ExpiresAt, "never")
		if k.ReplacedBy != nil && *k.ReplacedBy != "" {
			expires += " (rotated: replaced by " + *k.ReplacedBy + ")"
		}
		fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, str(k.Name), k.Tier, scopes,
			k.CreatedAt.Format(time.RFC3339), fmtTime(k.LastUsedAt, "never"), expires)
	}
	_ = tw.Flush()
}

func fmtTime(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.Format(time.RFC3339)
}

func printCreated(w io.Writer, k *wasmwiz.CreatedKey) {
	fmt.Fprintf(w, "%s\n\nkey id %s, tenant %s, tier %s, expires %s\nThis is the only time the key is shown: store it now.\n",
		k.Key, k.Record.ID, k.Record.TenantID, k.Record.Tier, fmtTime(k.Record.ExpiresAt, "never"))
}
