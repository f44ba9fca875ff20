/** A pause that `wake()` ends early, for background loops that must stop promptly. */
export class Pause {
  private wakeUp?: () => void;

  for(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  wake(): void {
    this.wakeUp?.();
  }
}

/** Waits `ms` milliseconds (a pause nobody wakes early: between retries). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
