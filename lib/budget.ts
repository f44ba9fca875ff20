/**
 * A budget shared by concurrent work: each piece takes its cost (the bytes of a large request body
 * being read and parsed, one turn of a request relayed upstream) before it starts and gives it back
 * when done; work that does not fit waits its turn, first come first served. A cost larger than the
 * whole budget takes the whole budget. The wait can be bounded: at most `maxWaiting` pieces wait, each
 * at most `patienceMs`; beyond, the error `busy()` makes is thrown.
 */
export interface BudgetLimits {
  maxWaiting?: number;
  patienceMs?: number;
  busy?: () => Error;
}

interface Waiting {
  cost: number;
  start: () => void;
}

export class Budget {
  private used = 0;
  private readonly waiting: Waiting[] = [];

  constructor(
    readonly capacity: number,
    private readonly limits: BudgetLimits = {},
  ) {}

  /** Waits until `cost` fits, takes it, and returns the function that gives it back (once). */
  async take(cost: number): Promise<() => void> {
    const size = Math.min(Math.max(0, cost), this.capacity);
    if (this.waiting.length === 0 && this.used + size <= this.capacity) this.used += size;
    else await this.wait(size);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.used -= size;
      this.startWaiting();
    };
  }

  /** Runs `work` once `cost` fits, and gives the cost back when it ends. */
  async run<T>(cost: number, work: () => Promise<T>): Promise<T> {
    const release = await this.take(cost);
    try {
      return await work();
    } finally {
      release();
    }
  }

  private wait(cost: number): Promise<void> {
    const { maxWaiting = Infinity, patienceMs, busy = () => new Error('The budget is spent and its queue is full.') } = this.limits;
    if (this.waiting.length >= maxWaiting) return Promise.reject(busy());
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const entry: Waiting = {
        cost,
        start: () => {
          if (timer) clearTimeout(timer);
          resolve();
        },
      };
      if (patienceMs !== undefined) {
        timer = setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(entry), 1);
          reject(busy());
          // Those behind it may fit now.
          this.startWaiting();
        }, patienceMs);
      }
      this.waiting.push(entry);
    });
  }

  private startWaiting(): void {
    while (this.waiting.length && this.used + this.waiting[0].cost <= this.capacity) {
      const next = this.waiting.shift() as Waiting;
      this.used += next.cost;
      next.start();
    }
  }
}
