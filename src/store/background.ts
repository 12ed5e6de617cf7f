/**
 * Which requests are background work. A mount's speculative loads (the blocks a startup profile names, small packs
 * read whole) run inside `inBackground(ticket, ...)`; every store request they send carries the ticket down to the
 * OriginPressure that schedules the mount's requests to one store, which gives background requests only the slots
 * demand requests leave and lets demand go first. When a reader comes to need the bytes of a background load (it
 * joins the load in flight), it promotes the load's ticket: its requests still waiting for a turn move to the
 * demand queue, so a preload never holds up the reader it was meant to serve.
 *
 * The ticket travels in an AsyncLocalStorage, so the stores between the cache and the network (metering, mirrors,
 * retries) need no extra parameter. Imports nothing.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** One background load's standing: background until a reader needs it. */
export class BackgroundTicket {
  private demanded = false;
  private readonly listeners: (() => void)[] = [];

  /** True once a reader needs what this load fetches: its requests are demand requests from now on. */
  get urgent(): boolean {
    return this.demanded;
  }

  /** A reader now waits on this load. */
  promote(): void {
    if (this.demanded) return;
    this.demanded = true;
    for (const listener of this.listeners.splice(0)) listener();
  }

  /** Calls `listener` once, when the ticket is promoted (at once if it already was). */
  onPromote(listener: () => void): void {
    if (this.demanded) listener();
    else this.listeners.push(listener);
  }
}

const current = new AsyncLocalStorage<BackgroundTicket>();

/** Runs `work` as background work under `ticket`: every store request it sends, however deep, carries the ticket. */
export function inBackground<T>(ticket: BackgroundTicket, work: () => Promise<T>): Promise<T> {
  return current.run(ticket, work);
}

/** The ticket of the background work this request belongs to, unless it is (or has become) demand work. */
export function backgroundTicket(): BackgroundTicket | undefined {
  const ticket = current.getStore();
  return ticket && !ticket.urgent ? ticket : undefined;
}
