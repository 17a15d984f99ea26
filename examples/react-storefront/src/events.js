// Behavioural events: view (item page), click (a recommendation), add_to_cart. Each carries
// the list, position and candidate source of the recommendation it came from, and its
// `recommendationId` when the gateway's schema serves one (older gateways do not: the field
// is then simply absent from the answer and from the event).
import { useMutation } from "@apollo/client/react";
import { useCallback, useSyncExternalStore } from "react";
import { TRACK } from "./operations.js";
import { newMessageId } from "./identity.js";

// The event types of Tailor's EventInput.type (see the README's event table).
export const EVENT = { view: "view", click: "click", addToCart: "add_to_cart" };

/** Where a recommendation was shown, for the event's properties. Remembered for the item, so
 * the view and add_to_cart that follow the click are attributed to the same recommendation. */
export function fromRecommendation(rec, list, position) {
  const props = { list, position, source: rec.source };
  if (rec.recommendationId) props.recommendationId = rec.recommendationId;
  sessionStorage.setItem(`tailor.from.${rec.item.id}`, JSON.stringify(props));
  return props;
}

/** The recommendation an item page was reached from (``{}`` when none). */
export function cameFrom(itemId) {
  try {
    return JSON.parse(sessionStorage.getItem(`tailor.from.${itemId}`) || "{}");
  } catch {
    return {};
  }
}

// A small log of what was sent and what the gateway said (shown in the page).
const log = [];
const listeners = new Set();
function append(entry) {
  log.unshift(entry);
  log.length = Math.min(log.length, 20);
  listeners.forEach((fn) => fn());
}
const subscribe = (fn) => (listeners.add(fn), () => listeners.delete(fn));
let snapshot = [];
listeners.add(() => (snapshot = [...log]));
export const useEventLog = () => useSyncExternalStore(subscribe, () => snapshot);

/** `track(type, itemId, properties)`: sends one event, then refreshes the personal blocks. */
export function useTrack() {
  const [mutate] = useMutation(TRACK, {
    refetchQueries: ["RecommendedForYou", "Viewer"],
    awaitRefetchQueries: true,
  });
  return useCallback(
    async (type, itemId, properties = {}) => {
      const event = { messageId: newMessageId(), type, itemId, channel: "web", properties };
      try {
        const { data } = await mutate({ variables: { events: [event] } });
        const outcome = data.track.results[0];
        append({ type, itemId, status: outcome.status, reason: outcome.reason, properties });
      } catch (error) {
        append({ type, itemId, status: "error", reason: error.message, properties });
      }
    },
    [mutate],
  );
}
