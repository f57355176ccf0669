// The reference GraphQL over HTTP audit (graphql-http's auditServer) against a URL given as the
// first argument. Prints one JSON line per audit: {id, name, status, reason}.
import { auditServer } from "graphql-http";

const url = process.argv[2];
const results = await auditServer({ url });
for (const result of results) {
  const { id, name, status } = result;
  const reason = status === "ok" ? null : result.reason;
  console.log(JSON.stringify({ id, name, status, reason }));
}
