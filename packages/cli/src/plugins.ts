import type { Plugin } from '@contrast/core';
import { endToEndPlugin } from '@contrast/plugin-end-to-end';
import { memoryBankPlugin } from '@contrast/plugin-memory-bank';
import { momentumQueuePlugin } from '@contrast/plugin-momentum-queue';
import { mocoV3Plugin } from '@contrast/plugin-moco-v3';

/** The strategy plugins this build of the command knows. */
export function builtinPlugins(): Plugin[] {
  return [endToEndPlugin(), memoryBankPlugin(), momentumQueuePlugin(), mocoV3Plugin()] as Plugin[];
}
