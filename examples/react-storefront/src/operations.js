// The operations live in ../../operations/*.graphql, shared with the Vue widget; the persisted
// query manifest (../../persisted-query-manifest.json) is generated from the same files.
import { gql } from "@apollo/client";
import trending from "../../operations/Trending.graphql?raw";
import recommendedForYou from "../../operations/RecommendedForYou.graphql?raw";
import segmentPicks from "../../operations/SegmentPicks.graphql?raw";
import itemPage from "../../operations/ItemPage.graphql?raw";
import search from "../../operations/Search.graphql?raw";
import viewer from "../../operations/Viewer.graphql?raw";
import track from "../../operations/Track.graphql?raw";
import identify from "../../operations/Identify.graphql?raw";
import cards from "../../operations/fragments/Cards.graphql?raw";

// The recommendation lists select their entries through the shared fragments (ItemCard,
// RecommendationCard); a document must define the fragments it spreads, and only those.
const withCards = (operation) => gql(`${operation}\n${cards}`);

export const TRENDING = withCards(trending);
export const RECOMMENDED_FOR_YOU = withCards(recommendedForYou);
export const SEGMENT_PICKS = withCards(segmentPicks);
export const ITEM_PAGE = withCards(itemPage);
export const SEARCH = withCards(search);
export const VIEWER = gql(viewer);
export const TRACK = gql(track);
export const IDENTIFY = gql(identify);
