// urql over Tailor with the storefront's persisted operations: the documents are the bodies of
// ../../persisted-query-manifest.json and every request names the manifest's id (GET for
// queries). `enforcePersistedQueries`: the text is never sent, so the gateway must know the
// manifest (`tailor persisted-queries import` it, as safelist mode requires anyway).
import { Client, fetchExchange } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";
import manifest from "../../persisted-query-manifest.json";

const byName = new Map(manifest.operations.map((op) => [op.name, op]));

/** The manifest body of the operation `name` (what urql sends, by its id). */
export function operation(name) {
  const op = byName.get(name);
  if (!op) throw new Error(`operation ${name} is not in the persisted-query manifest`);
  return op.body;
}

function operationName(document) {
  const def = document.definitions.find((d) => d.kind === "OperationDefinition");
  return def?.name?.value;
}

/** ``identity()`` returns ``{ anonymousId, token }`` at request time. */
export function createTailorClient(gateway, identity) {
  return new Client({
    url: `${gateway.replace(/\/$/, "")}/graphql`,
    requestPolicy: "network-only",
    exchanges: [
      persistedExchange({
        preferGetForPersistedQueries: true,
        enforcePersistedQueries: true,
        enableForMutation: true,
        generateHash: async (_text, document) => byName.get(operationName(document))?.id,
      }),
      fetchExchange,
    ],
    fetchOptions: () => {
      const { anonymousId, token } = identity();
      const headers = { "X-Anonymous-Id": anonymousId };
      if (token) headers.Authorization = `Bearer ${token}`;
      return { headers, cache: "no-cache" };
    },
  });
}
