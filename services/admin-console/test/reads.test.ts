import { describe, expect, it } from "vitest";
import { latestRead, newerAnswers } from "../src/lib/reads";

describe("latestRead", () => {
  it("only the read begun last is still the latest, whichever answers first", () => {
    const begin = latestRead();
    const lastFortnight = begin();
    const nextTwoWeeks = begin();
    expect(nextTwoWeeks()).toBe(true);
    expect(lastFortnight()).toBe(false); // answering late, it is not shown
    const again = begin();
    expect(nextTwoWeeks()).toBe(false);
    expect(again()).toBe(true);
  });
  it("each screen keeps its own count", () => {
    const one = latestRead();
    const other = latestRead();
    const read = one();
    other();
    expect(read()).toBe(true);
  });
});

describe("newerAnswers", () => {
  it("an answer older than the one shown is not shown", () => {
    const begin = newerAnswers();
    const first = begin();
    const second = begin();
    expect(second()).toBe(true);
    expect(first()).toBe(false);
  });
  it("reads begun faster than they answer still show each newer answer", () => {
    const begin = newerAnswers();
    const poll = begin();
    const liveReload = begin(); // begun before the poll answered
    expect(poll()).toBe(true); // shown: nothing newer has answered
    const nextPoll = begin();
    expect(liveReload()).toBe(true);
    expect(nextPoll()).toBe(true);
  });
  it("an answer is shown once", () => {
    const begin = newerAnswers();
    const read = begin();
    expect(read()).toBe(true);
    expect(read()).toBe(false);
  });
});
