import 'reflect-metadata';
import { initBackend } from '@contrast/backend';

// Tests run on the native TensorFlow backend; a missing binding fails loudly here.
await initBackend(process.env.CONTRAST_BACKEND === 'cpu' ? 'cpu' : 'tensorflow');
