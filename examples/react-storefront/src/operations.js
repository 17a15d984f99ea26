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

export const TRENDING = gql(trending);
export const RECOMMENDED_FOR_YOU = gql(recommendedForYou);
export const SEGMENT_PICKS = gql(segmentPicks);
export const ITEM_PAGE = gql(itemPage);
export const SEARCH = gql(search);
export const VIEWER = gql(viewer);
export const TRACK = gql(track);
export const IDENTIFY = gql(identify);
